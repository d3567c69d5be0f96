"""read_variants on the real ClinVar VCF + region FASTAs, and on generated inputs."""

from __future__ import annotations

import gzip
import random

import pandas as pd
import pysam
import pytest
from click.testing import CliRunner

from biointerp.cli import main
from biointerp.genome import Genome
from biointerp.variants import (STATUSES, clinvar_label, clinvar_labels, read_variants, review_stars,
                                status_counts)

BRCA1 = "chr17:41100001-41300000"
HEADER = "##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"


def _vcf_records_in(vcf, contig, first, last) -> int:
    """Independent count: records with POS in [first, last] via tabix."""
    with pysam.TabixFile(str(vcf), encoding="utf-8") as tbx:
        return sum(1 for line in tbx.fetch(contig, first - 1, last) if first <= int(line.split("\t")[1]) <= last)


@pytest.fixture(scope="module")
def brca1_table(clinvar_vcf, brca1_fasta):
    return read_variants(clinvar_vcf, Genome(brca1_fasta), region="17:41100001-41300000",
                         info_fields=["CLINICAL_SIGNIFICANCE", "GOLD_STARS", "SYMBOL"])


def test_brca1_region_every_record_once_with_status(brca1_table, clinvar_vcf, brca1_fasta):
    t = brca1_table
    assert _vcf_records_in(clinvar_vcf, "17", 41_100_001, 41_300_000) == 3711
    assert len(t) == 3711 and t["record"].tolist() == list(range(1, 3712))
    assert set(t["status"]) <= set(STATUSES)
    # measured: every BRCA1-region record matches the GRCh37 FASTA (no ref mismatch, no duplicate)
    assert status_counts(t)["ok"] == 3711
    assert (t["chrom"] == "chr17").all() and (t["input_chrom"] == "17").all()
    assert t["variant_id"].str.startswith("chr17:").all() and t["variant_id"].is_unique
    g = Genome(brca1_fasta)
    # independent REF check of every row against the FASTA
    for r in t.itertuples():
        assert g.fetch("chr17", r.pos, r.pos + len(r.ref) - 1) == r.ref
    assert (t["gene"] == "BRCA1").sum() == 3707
    assert t["CLINICAL_SIGNIFICANCE"].notna().all()
    assert t["GOLD_STARS"].value_counts().to_dict() == {0: 1533, 1: 1418, 2: 383, 3: 377}


def test_left_normalisation_keeps_haplotype(brca1_table, brca1_fasta):
    """Normalised indels (3 in BRCA1) describe the same haplotype and cannot shift further left."""
    g = Genome(brca1_fasta)
    moved = brca1_table[brca1_table["status_detail"].str.startswith("normalised")]
    assert len(moved) == 3
    assert "chr17:41200534:T:TC" in set(moved["variant_id"])
    for r in moved.itertuples():
        lo = min(r.pos, r.input_pos) - 20
        hi = max(r.pos + len(r.ref), r.input_pos + len(r.input_ref)) + 20
        ctx = g.fetch("chr17", lo, hi)

        def apply(p, ref, alt):
            return ctx[: p - lo] + alt.upper() + ctx[p - lo + len(ref):]

        assert apply(r.pos, r.ref, r.alt) == apply(r.input_pos, r.input_ref, r.input_alt)
        assert r.ref[-1] != r.alt[-1]  # fully left-aligned: last bases differ


def test_full_vcf_with_region_fasta_counts(clinvar_vcf, brca1_fasta):
    t = read_variants(clinvar_vcf, Genome(brca1_fasta))
    c = status_counts(t)
    assert len(t) == 132_815 and t["record"].is_unique
    n17 = int((t["input_chrom"] == "17").sum())
    assert n17 == 10_879
    assert c["ok"] == 3711
    assert c["out_of_bounds"] == n17 - 3711  # chr17 but outside the region FASTA
    assert c["unknown_contig"] == 132_815 - n17
    assert sum(c.values()) == len(t)


def test_wrong_build_gives_ref_mismatch(clinvar_vcf, shared_data):
    """GRCh37 ClinVar against a GRCh38 chr17 FASTA: positions mean other bases -> ref_mismatch."""
    g38 = Genome(shared_data / "reference" / "chr17_brca1_locus_1.2Mb.GRCh38.fa")
    assert g38.bounds("17") == (42_425_000, 43_600_000)
    t = read_variants(clinvar_vcf, g38, region="17:42425000-43600000")
    c = status_counts(t)
    assert len(t) == _vcf_records_in(clinvar_vcf, "17", 42_425_000, 43_600_000) == 274
    assert (c["ok"], c["ref_mismatch"]) == (67, 207)  # measured
    snv = t[(t["input_ref"].str.len() == 1) & (t["input_alt"].str.len() == 1)]
    mism = snv[snv["status"] == "ref_mismatch"]
    for r in mism.head(50).itertuples():
        assert g38.fetch("chr17", r.pos, r.pos) != r.ref.upper()
    assert mism["status_detail"].str.contains("but the reference has").all()


def _genome(tmp_path, seq="ACGTACGTAAAAAGGCCTTACGTAC", name="chrT"):
    fa = tmp_path / "g.fa"
    fa.write_text(f">{name}\n{seq}\n")
    return Genome(fa), seq


def test_split_normalise_duplicates_statuses(tmp_path):
    g, seq = _genome(tmp_path)
    # seq positions: 9..13 = AAAAA
    body = [
        "chrT\t3\trs7\tG\tA,C,T\t.\t.\tAF=0.1,0.2,0.3;DP=7",  # multi-allelic -> 3 rows
        "chrT\t12\t.\tAA\tA\t.\t.\tDP=1;RS=123;GENEINFO=GENE1:672",  # deletion in the A run -> pos 8
        "chrT\t8\t.\tTA\tT\t.\t.\tDP=2",  # the same deletion, already left-aligned -> duplicate
        "chrT\t13\t.\tA\tAA\t.\t.\t.",  # insertion in the A run -> 8:T:TA
        "chrT\t5\t.\tC\tG\t.\t.\t.",  # ref mismatch (base 5 is A)
        "chrU\t4\t.\tT\tC\t.\t.\t.",  # contig not in the FASTA -> unknown_contig
        "chrT\t30\t.\tA\tG\t.\t.\t.",  # beyond the end
        "chrT\t6\t.\tC\t<DEL>\t.\t.\t.",
        "chrT\t3\trs7\tG\tA\t.\t.\t.",  # duplicate of the first ALT of record 1
    ]
    vcf = tmp_path / "v.vcf"
    vcf.write_text('##INFO=<ID=AF,Number=A,Type=Float,Description="x">\n' + HEADER + "\n".join(body) + "\n")
    t = read_variants(vcf, g, info_fields=["AF", "DP"])
    assert len(t) == 11 and t["record"].tolist() == [1, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert t["alt_index"].tolist()[:3] == [0, 1, 2]
    assert t["AF"].tolist()[:3] == [0.1, 0.2, 0.3]
    assert t["rsid"].iloc[0] == "rs7" and t["rsid"].iloc[3] == "rs123" and t["gene"].iloc[3] == "GENE1"
    assert t["rsid"].iloc[5] is None and t["gene"].iloc[5] is None
    st = dict(zip(range(len(t)), t["status"]))
    assert [st[i] for i in range(3)] == ["ok"] * 3
    assert t.loc[3, "variant_id"] == "chrT:8:TA:T" and st[3] == "ok"
    assert st[4] == "duplicate" and "record 2" in t.loc[4, "status_detail"]
    assert t.loc[5, "variant_id"] == "chrT:8:T:TA" and st[5] == "ok"
    assert st[6] == "ref_mismatch"
    assert st[7] == "unknown_contig"
    assert st[8] == "out_of_bounds"
    assert st[9] == "symbolic_allele"
    assert st[10] == "duplicate"


def test_no_genome_trims_but_keeps_names(tmp_path):
    vcf = tmp_path / "v.vcf"
    vcf.write_text(HEADER + "17\t100\t.\tCAT\tCT\t.\t.\t.\n17\t200\t.\tAGG\tTGG\t.\t.\t.\n")
    t = read_variants(vcf)
    assert t["variant_id"].tolist() == ["17:100:CA:C", "17:200:A:T"]
    assert (t["status"] == "ok").all()


def test_tables_tsv_csv_parquet_and_bgzip_bcf(tmp_path, brca1_table, brca1_fasta):
    sub = brca1_table.head(40)[["chrom", "pos", "ref", "alt"]].rename(columns={"chrom": "CHROM", "pos": "POS"})
    sub["score_in"] = range(40)
    sub.to_csv(tmp_path / "v.tsv", sep="\t", index=False)
    sub.to_csv(tmp_path / "v.csv", index=False)
    sub.to_parquet(tmp_path / "v.parquet", index=False)
    pd.DataFrame({"variant_id": brca1_table["variant_id"].head(40).str.replace("chr17", "17")}).to_csv(
        tmp_path / "ids.tsv", sep="\t", index=False)
    g = Genome(brca1_fasta)
    want = brca1_table["variant_id"].head(40).tolist()
    for name in ("v.tsv", "v.csv", "v.parquet", "ids.tsv"):
        t = read_variants(tmp_path / name, g)
        assert t["variant_id"].tolist() == want, name
        assert (t["status"] == "ok").all()
    assert read_variants(tmp_path / "v.tsv", g)["score_in"].tolist() == list(range(40))
    # bgzip + BCF written by pysam round-trip to the same ids
    vcf = tmp_path / "s.vcf"
    lines = [f"17\t{r.pos}\t.\t{r.ref}\t{r.alt}\t.\t.\t." for r in brca1_table.head(40).itertuples()]
    vcf.write_text("##fileformat=VCFv4.2\n##contig=<ID=17>\n" + HEADER.split("\n", 1)[1] + "\n".join(lines) + "\n")
    pysam.tabix_compress(str(vcf), str(tmp_path / "s.vcf.gz"))
    assert read_variants(tmp_path / "s.vcf.gz", g)["variant_id"].tolist() == want
    with pysam.VariantFile(str(vcf)) as src, pysam.VariantFile(str(tmp_path / "s.bcf"), "wb", header=src.header) as dst:
        for rec in src:
            dst.write(rec)
    assert read_variants(tmp_path / "s.bcf", g)["variant_id"].tolist() == want


def test_unsorted_vcf_keeps_input_order(tmp_path, brca1_table, brca1_fasta):
    rows = list(brca1_table.head(60).itertuples())
    random.Random(1).shuffle(rows)
    vcf = tmp_path / "u.vcf.gz"
    with gzip.open(vcf, "wt") as fh:  # plain gzip is fine for reading a VCF
        fh.write(HEADER + "".join(f"17\t{r.pos}\t.\t{r.ref}\t{r.alt}\t.\t.\t.\n" for r in rows))
    t = read_variants(vcf, Genome(brca1_fasta))
    assert t["variant_id"].tolist() == [r.variant_id for r in rows]
    assert (t["status"] == "ok").all()


def test_clinvar_labels():
    assert clinvar_label("Pathogenic") == "pathogenic"
    assert clinvar_label("Likely_pathogenic|Pathogenic|not_provided") == "pathogenic"
    assert clinvar_label("Benign/Likely_benign") == "benign"
    assert clinvar_label("Pathogenic|Uncertain_significance") == "other"
    assert clinvar_label("Benign|Pathogenic") == "other"
    assert clinvar_label("Pathogenic", stars=1, min_stars=2) == "other"
    assert clinvar_label("Pathogenic", stars=None, min_stars=1) == "other"
    assert clinvar_label(None) == "other"
    s = pd.Series(["Pathogenic", "Benign", "Uncertain_significance", "Pathogenic"])
    assert clinvar_labels(s, pd.Series([3, 0, 2, 0]), min_stars=1).tolist() == ["pathogenic", "other", "other", "other"]
    rs = review_stars(pd.Series(["reviewed_by_expert_panel", "criteria_provided..single_submitter",
                                 "no_assertion_provided", None]))
    assert rs.tolist()[:3] == [3.0, 1.0, 0.0] and pd.isna(rs.iloc[3])


def test_cli_check_region_summary_and_table(tmp_path, clinvar_vcf, brca1_fasta):
    out = tmp_path / "t.parquet"
    res = CliRunner().invoke(main, ["variants", "check", "--fasta", str(brca1_fasta), "--vcf", str(clinvar_vcf),
                                    "--region", BRCA1, "--info", "CLINICAL_SIGNIFICANCE,SYMBOL",
                                    "--label", "--min-stars", "1", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "records   3711" in res.output
    assert "ok                   3711" in res.output
    t = pd.read_parquet(out)
    assert len(t) == 3711 and set(t.columns) >= {"variant_id", "status", "status_detail", "label", "SYMBOL"}
    assert t["label"].value_counts().to_dict() == {"other": 2551, "pathogenic": 616, "benign": 544}


def _brute_left(seq: str, pos: int, ref: str, alt: str) -> tuple[int, str, str]:
    """Leftmost minimal VCF representation by brute force over all equivalent edits."""
    hap = seq[: pos - 1] + alt + seq[pos - 1 + len(ref):]
    if len(ref) > len(alt):  # deletion of L bases
        L = len(ref) - len(alt)
        for q in range(1, len(seq) - L + 1):  # anchor base at q, delete q+1..q+L
            if seq[:q] + seq[q + L:] == hap:
                return q, seq[q - 1: q + L], seq[q - 1]
    else:
        ins = len(alt) - len(ref)
        for q in range(1, len(seq) + 1):
            cand = hap[q: q + ins]
            if seq[:q] + cand + seq[q:] == hap:
                return q, seq[q - 1], seq[q - 1] + cand
    raise AssertionError("no representation found")


def test_left_normalisation_matches_brute_force(tmp_path):
    rng = random.Random(7)
    units = ["A", "CA", "GGT", "T", "AC"]
    seq = "G" + "".join(rng.choice(units) * rng.randint(1, 6) + rng.choice("ACGT") for _ in range(40))
    g, _ = _genome(tmp_path, seq=seq, name="chrR")
    rows, expect = [], []
    for _ in range(150):
        p = rng.randint(2, len(seq) - 12)
        if rng.random() < 0.5:
            L = rng.randint(1, 4)
            ref, alt = seq[p - 1: p + L], seq[p - 1]
        else:
            ref = seq[p - 1]
            alt = ref + (seq[p: p + rng.randint(1, 4)] if rng.random() < 0.7 else rng.choice(["A", "CA", "TT"]))
        # pad both alleles with shared right context sometimes (non-minimal input)
        if rng.random() < 0.3:
            extra = seq[p - 1 + len(ref): p + len(ref) + 1]
            ref, alt = ref + extra, alt + extra
        rows.append(f"chrR\t{p}\t.\t{ref}\t{alt}\t.\t.\t.")
        expect.append(_brute_left(seq, p, ref, alt))
    vcf = tmp_path / "n.vcf"
    vcf.write_text(HEADER + "\n".join(rows) + "\n")
    t = read_variants(vcf, g)
    assert len(t) == 150
    got = list(zip(t["pos"], t["ref"], t["alt"]))
    seen = set()
    for (gp, gr, ga), e, st in zip(got, expect, t["status"]):
        assert (gp, gr, ga) == e
        assert st == ("duplicate" if e in seen else "ok")
        seen.add(e)


def test_region_filter_without_index(tmp_path):
    g, seq = _genome(tmp_path, name="chr5")
    rows = [f"{c}\t{p}\t.\t{seq[p - 1]}\tN\t.\t.\t." for c, p in
            [("5", 3), ("chr5", 10), ("5", 20), ("6", 10), ("5", 11)]]
    vcf = tmp_path / "r.vcf"
    vcf.write_text(HEADER + "\n".join(rows) + "\n")
    t = read_variants(vcf, g, region="chr5:10-20")
    assert t["variant_id"].tolist() == [f"chr5:10:{seq[9]}:N", f"chr5:20:{seq[19]}:N", f"chr5:11:{seq[10]}:N"]
    assert t["record"].tolist() == [1, 2, 3]


def test_undeclared_info_keys_are_read(clinvar_vcf, brca1_fasta):
    """PATHOGENIC/BENIGN/CONFLICTED are used but not declared in the ClinVar header."""
    t = read_variants(clinvar_vcf, Genome(brca1_fasta), region=BRCA1,
                      info_fields=["PATHOGENIC", "BENIGN", "CONFLICTED"])
    with pysam.TabixFile(str(clinvar_vcf), encoding="utf-8") as tbx:  # independent count
        n_patho = sum(";PATHOGENIC=1" in line for line in tbx.fetch("17", 41_100_000, 41_300_000)
                      if 41_100_001 <= int(line.split("\t")[1]))
    assert (t["PATHOGENIC"] == "1").sum() == n_patho == 1206
    assert t["BENIGN"].value_counts().to_dict() == {"0": 2910, "1": 801}
    assert (t["CONFLICTED"] == "1").sum() == 2


def test_brca2_region_counts(clinvar_vcf, brca2_fasta):
    t = read_variants(clinvar_vcf, Genome(brca2_fasta), region="chr13:32800001-33000000")
    assert len(t) == _vcf_records_in(clinvar_vcf, "13", 32_800_001, 33_000_000) == 5169
    assert status_counts(t)["ok"] == 5169  # measured: no REF mismatch against the GRCh37 FASTA
    assert t["variant_id"].str.startswith("chr13:").all()


def test_checked_table_round_trip(tmp_path, clinvar_vcf, brca2_fasta):
    """`variants check --out t.parquet` re-read by read_variants (as `score` does) gives the same table."""
    g = Genome(brca2_fasta)
    first = read_variants(clinvar_vcf, g, region="13:32890000-32960000", info_fields=["CLINICAL_SIGNIFICANCE"])
    vcf = tmp_path / "mix.vcf"  # add non-ok rows so that statuses must survive the round trip
    vcf.write_text(HEADER + "13\t32890600\t.\tG\tA,<DEL>\t.\t.\t.\n13\t32890600\t.\tG\tA\t.\t.\t.\n"
                   "7\t100\t.\tA\tG\t.\t.\t.\n13\t32890601\t.\tT\tC\t.\t.\t.\n")
    mix = read_variants(vcf, g)
    for table in (first, mix):
        table = table.assign(label=["x"] * len(table))
        table.to_parquet(tmp_path / "t.parquet", index=False)
        again = read_variants(tmp_path / "t.parquet", g)
        assert list(again.columns[:15]) == list(table.columns[:15])
        pd.testing.assert_frame_equal(again[list(table.columns)].reset_index(drop=True),
                                      table.reset_index(drop=True), check_dtype=False)
    # chr13:32890600 is G and 32890601 is C in the GRCh37 FASTA
    assert mix["status"].tolist() == ["ok", "symbolic_allele", "duplicate", "unknown_contig", "ref_mismatch"]
    assert mix["record"].tolist() == [1, 1, 2, 3, 4]
