"""Variant database from real ClinVar records (BRCA1 region, GRCh37) and annotation of a real VCF slice."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pysam
import pytest
from click.testing import CliRunner

import biointerp.db as vdb
from biointerp.cli import main
from biointerp.tables import make_scores_adata, write_scores
from biointerp.variants import clinvar_labels, read_variants

BRCA1 = ("17", 41_100_001, 41_300_000)
BRCA2 = ("13", 32_900_000, 32_905_000)  # records outside the database: must pass through


@pytest.fixture(scope="module")
def clinvar_db(clinvar_vcf, brca1_fasta, tmp_path_factory):
    d = tmp_path_factory.mktemp("clinvar_db")
    var = read_variants(clinvar_vcf, genome=brca1_fasta, region="17:41100001-41300000",
                        info_fields=("CLINICAL_SIGNIFICANCE", "GOLD_STARS"))
    var["label"] = clinvar_labels(var["CLINICAL_SIGNIFICANCE"], var["GOLD_STARS"]).values
    var["clinvar_significance"] = var["CLINICAL_SIGNIFICANCE"]
    rng = np.random.default_rng(17)
    scores = {"pathogenicity": rng.random(len(var)).astype(np.float32),
              "delta_ll": rng.standard_normal(len(var)).astype(np.float32)}
    ad = make_scores_adata(var.drop(columns=["CLINICAL_SIGNIFICANCE"]), scores, uns={"model": "synthetic-scores"})
    write_scores(ad, d / "brca1.h5ad")
    db = d / "brca1.duckdb"
    meta = vdb.build([d / "brca1.h5ad"], db)
    return {"dir": d, "db": db, "meta": meta, "var": var, "adata": ad}


def _vcf_slice(src, out, regions):
    """Real ClinVar lines for ``regions`` (raw text via tabix, undeclared INFO keys included), bgzipped."""
    tbx = pysam.TabixFile(str(src), encoding="utf-8")
    lines = list(tbx.header)
    for c, s, e in regions:
        lines += list(tbx.fetch(c, s - 1, e))
    with pysam.BGZFile(str(out), "wb") as fh:
        fh.write(("\n".join(lines) + "\n").encode())
    return len(lines) - len(list(tbx.header))


def test_build_from_clinvar(clinvar_db):
    var, meta = clinvar_db["var"], clinvar_db["meta"]
    assert meta["n_rows"] == len(var) == 3711
    with vdb.open(clinvar_db["db"]) as db:
        assert set(db.contigs) == {"chr17"}  # contig names as in the reference
        assert db.heads == ["delta_ll"]  # only X columns become heads; record/alt_index/... are listed as not kept
        assert "alt_index" in db.metadata["inputs"][0]["ignored_columns"]
        ids = db._run("SELECT variant_id, status, score FROM variants", []).frame()
        assert sorted(ids.variant_id) == sorted(var.variant_id)
        n_bad = int((var.status != "ok").sum())
        assert int(ids.score.isna().sum()) == n_bad  # rows that are not ok are kept without a score
        # look-ups by the VCF's own contig name (17) find the chr17 rows
        ok = var[var.status == "ok"].iloc[100]
        hit = db.query(f"17:{ok.pos}:{ok.ref}:{ok.alt}")
        assert hit.variant_id.tolist() == [ok.variant_id]
        assert hit.clinvar_significance[0] == ok.CLINICAL_SIGNIFICANCE
        top = db.query(gene="BRCA1", top=10, heads=False)
        exp = clinvar_db["adata"].obs.assign(p=np.asarray(clinvar_db["adata"].X)[:, 0])
        exp = exp[exp.gene == "BRCA1"].p.dropna().sort_values(ascending=False).head(10).to_numpy(np.float32)
        assert np.array_equal(top.score.to_numpy(np.float32), exp)


def test_annotate_real_vcf_slice(clinvar_db, clinvar_vcf, tmp_path):
    vin = tmp_path / "slice.vcf.gz"
    n = _vcf_slice(clinvar_vcf, vin, [BRCA1, BRCA2])
    out = tmp_path / "annotated.vcf.gz"
    s = vdb.annotate(clinvar_db["db"], vin, out, heads=["delta_ll"])
    assert s["records"] == n

    var = clinvar_db["var"]
    db_rows = var.assign(score=np.asarray(clinvar_db["adata"].X)[:, 0]).set_index(
        ["input_pos", var.input_ref.str.upper(), var.input_alt.str.upper()])
    # expectation computed independently: a record is annotated when (POS, REF, ALT) is a database row as is
    same = (db_rows.index.get_level_values(0) == db_rows.pos.values) & \
           (db_rows.index.get_level_values(1) == db_rows.ref.values) & \
           (db_rows.index.get_level_values(2) == db_rows.alt.values)
    findable = {k: (r.status, float(r.score), r.label) for k, r in zip(db_rows.index[same], db_rows[same].itertuples())}
    n_annot = n_out = n_brca2 = 0
    for rec in pysam.VariantFile(str(out)):
        n_out += 1
        key = (rec.pos, rec.ref.upper(), rec.alts[0].upper())
        if rec.chrom == "13":
            n_brca2 += 1
            assert "BI_SCORE" not in rec.info
            continue
        if key in findable:
            n_annot += 1
            status, score, label = findable[key]
            got = rec.info["BI_SCORE"][0]
            if status == "ok":
                assert got == pytest.approx(score, rel=1e-5)
                assert rec.info["BI_LABEL"][0] == label
            else:
                assert got is None
        else:
            assert "BI_SCORE" not in rec.info
    assert n_out == n and n_brca2 > 0
    assert n_annot == s["annotated_records"] == len(findable)
    assert s["unmatched_records"] == n - n_annot
    hdr = pysam.VariantFile(str(out)).header.info
    assert hdr["BI_SCORE"].number == "A" and hdr["BI_SCORE"].type == "Float"
    assert hdr["BI_DELTA_LL"].type == "Float" and hdr["BI_LABEL"].type == "String"


def test_cli_annotate_summary(clinvar_db, clinvar_vcf, tmp_path):
    vin = tmp_path / "s.vcf.gz"
    _vcf_slice(clinvar_vcf, vin, [("17", 41_196_000, 41_200_000)])
    r = CliRunner()
    out = tmp_path / "o.vcf.gz"
    res = r.invoke(main, ["db", "annotate", str(vin), "--db", str(clinvar_db["db"]), "-o", str(out), "--index",
                          "--summary", str(tmp_path / "s.json")])
    assert res.exit_code == 0, res.output
    assert "annotated" in res.output and (tmp_path / "o.vcf.gz.tbi").exists()
    summary = pd.read_json(tmp_path / "s.json", typ="series")
    assert summary["records"] == sum(1 for _ in pysam.VariantFile(str(out)).fetch("17", 41_195_999, 41_200_000))
    res = r.invoke(main, ["db", "annotate", str(vin), "--db", str(clinvar_db["db"]), "-o", str(out),
                          "--heads", "nope"])
    assert res.exit_code == 1 and "unknown head" in res.output
    bad = tmp_path / "bad.vcf"
    bad.write_text("not a vcf\n")
    res = r.invoke(main, ["db", "annotate", str(bad), "--db", str(clinvar_db["db"]), "-o", str(out)])
    assert res.exit_code == 1 and "bad.vcf" in res.output


def test_annotate_streams_in_batches(clinvar_db, clinvar_vcf, tmp_path):
    """Small blocks (many batches) give byte-identical output; a header-only VCF gives a valid empty one."""
    import gzip

    vin = tmp_path / "s.vcf.gz"
    n = _vcf_slice(clinvar_vcf, vin, [BRCA1])
    one = vdb.annotate(clinvar_db["db"], vin, tmp_path / "one.vcf.gz")
    many = vdb.annotate(clinvar_db["db"], vin, tmp_path / "many.vcf.gz", batch_bytes=1 << 15)
    assert one["records"] == many["records"] == n
    assert one["annotated_records"] == many["annotated_records"] > 0
    assert gzip.decompress((tmp_path / "one.vcf.gz").read_bytes()) == \
        gzip.decompress((tmp_path / "many.vcf.gz").read_bytes())
    head = tmp_path / "head.vcf"
    head.write_text("".join(ln + "\n" for ln in pysam.TabixFile(str(clinvar_vcf), encoding="utf-8").header))
    s = vdb.annotate(clinvar_db["db"], head, tmp_path / "empty.vcf.gz")
    assert s["records"] == 0 and list(pysam.VariantFile(str(tmp_path / "empty.vcf.gz"))) == []
