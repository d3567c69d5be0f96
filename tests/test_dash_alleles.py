"""MAF-style '-' alleles in table inputs, anchored against the real BRCA1 region FASTA (GRCh37)."""

from __future__ import annotations

import pandas as pd
import pytest
from click.testing import CliRunner

from biointerp.cli import main
from biointerp.genome import Genome
from biointerp.variants import read_variants

COLS = ["variant_id", "chrom", "pos", "ref", "alt", "status"]


@pytest.fixture(scope="module")
def genome(brca1_fasta):
    return Genome(brca1_fasta)


def _tsv(path, rows):
    path.write_text("chrom\tpos\tref\talt\tgene\n" + "".join("\t".join(map(str, r)) + "\tBRCA1\n" for r in rows))
    return path


def _events(g: Genome):
    """(MAF-style row, VCF-style row, expected chr17 pos:ref:alt) built from the reference bases."""
    # insertion of TTG after 41200000 (base A, not G, so it does not shift left)
    b_ins = g.fetch("chr17", 41200000, 41200000)
    # deletion of 41200002..41200004, anchored on 41200001
    dele = g.fetch("chr17", 41200002, 41200004)
    b_del = g.fetch("chr17", 41200001, 41200001)
    # deletion of one A of the AAAA run 41250002..41250005: left-normalises to the G before the run
    run = g.fetch("chr17", 41250001, 41250006)
    assert (b_ins, b_del, dele, run) == ("A", "G", "GCT", "GAAAAT")  # the bases these events rely on
    return [
        (("17", 41200000, "-", "TTG"), ("17", 41200000, "A", "ATTG"), (41200000, "A", "ATTG")),
        (("17", 41200002, dele, "-"), ("17", 41200001, b_del + dele, b_del), (41200001, "GGCT", "G")),
        (("17", 41250004, "A", "-"), ("17", 41250003, "AA", "A"), (41250001, "GA", "G")),
    ]


def test_dash_indels_anchor_like_vcf_records(tmp_path, genome):
    ev = _events(genome)
    maf_rows = [e[0] for e in ev] + [
        ("17", 41200002, "TTT", "-"),  # REF does not match (reference has GCT)
        ("chr17", 41100001, "G", "-"),  # first base the reference holds: nothing to anchor on
        ("17", 41200010, "C", "T"),  # an ordinary SNV row in the same file
        ("17", 41200000, "-", "-"),  # no event at all
        ("chr5", 100, "-", "A"),  # contig not in the reference
    ]
    t = read_variants(_tsv(tmp_path / "maf.tsv", maf_rows), genome)
    assert len(t) == len(maf_rows) and t["record"].tolist() == list(range(1, len(maf_rows) + 1))  # nothing dropped
    assert genome.fetch("chr17", 41200010, 41200010) == "C"
    assert t["status"].tolist() == ["ok", "ok", "ok", "ref_mismatch", "out_of_bounds", "ok",
                                    "invalid_allele", "unknown_contig"]
    for k, (_, _, (pos, ref, alt)) in enumerate(ev):
        r = t.iloc[k]
        assert (r["chrom"], r["pos"], r["ref"], r["alt"]) == ("chr17", pos, ref, alt)
        assert r["variant_id"] == f"chr17:{pos}:{ref}:{alt}"
        # the input alleles stay traceable
        assert (r["input_chrom"], r["input_pos"], r["input_ref"], r["input_alt"]) == ev[k][0]
        assert r["status_detail"] == f"normalised from {ev[k][0][1]}:{ev[k][0][2]}:{ev[k][0][3]}"
    assert t["gene"].tolist() == ["BRCA1"] * len(maf_rows)
    assert "reference has GGCT" in t.loc[3, "status_detail"]  # checked on the anchored record
    assert "first base of the reference" in t.loc[4, "status_detail"] and "chr17:41100001" in t.loc[4, "status_detail"]
    assert "both '-'" in t.loc[6, "status_detail"]
    assert "chr5" in t.loc[7, "status_detail"]

    # the same events written VCF-style give the very same rows
    v = read_variants(_tsv(tmp_path / "vcfstyle.tsv", [e[1] for e in ev]), genome)
    pd.testing.assert_frame_equal(t.loc[: len(ev) - 1, COLS].reset_index(drop=True), v[COLS])
    assert (v["status_detail"].iloc[:2] == "").all()  # already anchored: nothing to say


def test_dash_indels_csv_and_parquet(tmp_path, genome):
    ev = _events(genome)
    df = pd.DataFrame([e[0] for e in ev], columns=["chrom", "pos", "ref", "alt"])
    df.to_csv(tmp_path / "v.csv", index=False)
    df.to_parquet(tmp_path / "v.parquet", index=False)
    want = [f"chr17:{p}:{r}:{a}" for _, _, (p, r, a) in ev]
    for name in ("v.csv", "v.parquet"):
        t = read_variants(tmp_path / name, genome)
        assert t["variant_id"].tolist() == want and (t["status"] == "ok").all(), name


def test_dash_alleles_need_a_genome(tmp_path, genome):
    ev = _events(genome)
    t = read_variants(_tsv(tmp_path / "maf.tsv", [e[0] for e in ev] + [("17", 41200010, "C", "T")]))
    assert t["status"].tolist() == ["invalid_allele"] * 3 + ["ok"]
    assert t["status_detail"].iloc[:3].str.contains("reference genome is needed to anchor '-' alleles").all()


def test_dot_and_empty_alleles_stay_missing_and_vcf_dash_stays_invalid(tmp_path, genome):
    tsv = tmp_path / "t.tsv"
    tsv.write_text("chrom\tpos\tref\talt\n17\t41200002\tGCT\t.\n17\t41200002\tGCT\t\n17\t41200000\t.\tTTG\n")
    t = read_variants(tsv, genome)
    assert t["status"].tolist() == ["invalid_allele"] * 3
    assert "'-'" in t["status_detail"].iloc[0]  # the hint names the accepted notation
    vcf = tmp_path / "v.vcf"
    vcf.write_text("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
                   "17\t41200000\t.\t-\tTTG\t.\t.\t.\n17\t41200002\t.\tGCT\t-\t.\t.\t.\n")
    v = read_variants(vcf, genome)
    assert v["status"].tolist() == ["invalid_allele"] * 2


def test_cli_check_on_dash_table(tmp_path, genome, brca1_fasta):
    ev = _events(genome)
    src = _tsv(tmp_path / "maf.tsv", [e[0] for e in ev] + [("17", 41200002, "TTT", "-")])
    out = tmp_path / "checked.tsv"
    res = CliRunner().invoke(main, ["variants", "check", "--fasta", str(brca1_fasta), "--vcf", str(src),
                                    "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "records   4" in res.output
    assert "ok                      3" in res.output and "ref_mismatch            1" in res.output
    assert "17:41200002:TTT:-" in res.output  # the non-ok row is shown with its input alleles
    w = pd.read_csv(out, sep="\t")
    assert w["variant_id"].tolist()[:3] == [f"chr17:{p}:{r}:{a}" for _, _, (p, r, a) in ev]
    # re-checking the written table keeps the anchored records and the original input
    again = read_variants(out, genome)
    assert again["variant_id"].tolist() == w["variant_id"].tolist()
    assert again["status"].tolist() == w["status"].tolist()
    assert again["input_ref"].tolist()[0] == "-"
    # without --fasta the dash rows are reported, not dropped
    res = CliRunner().invoke(main, ["variants", "check", "--vcf", str(src)])
    assert res.exit_code == 0, res.output
    assert "invalid_allele          4" in res.output and "reference genome is needed" in res.output
