"""Variant IDs of any scheme, empty input, FASTA index location, capped rsID look-ups."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from biointerp.cli import main
from biointerp.genome import Genome

HEADER = "##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
SEQ = "ACGTACGTAAAAAGGCCTTACGTACCGGTTAACCGGTTAA"  # 40 bp


@pytest.fixture()
def fasta(tmp_path):
    fa = tmp_path / "ref.fa"
    fa.write_text(">chr1\n" + SEQ[:20] + "\n" + SEQ[20:] + "\n")
    return fa


def _invoke(*args):
    r = CliRunner().invoke(main, [str(a) for a in args])
    assert r.exception is None or isinstance(r.exception, SystemExit), r.output
    assert "Traceback" not in r.output
    return r


# (ID as written in the VCF, expected id, expected rsid)
IDS = [
    ("rs123", "rs123", "rs123"),
    ("COSV57239214", "COSV57239214", None),
    (".", None, None),
    ("esv3647175;rs9", "esv3647175;rs9", "rs9"),
    ("变异-1", "变异-1", None),
    ("ClinVar:VCV000017661", "ClinVar:VCV000017661", None),
    ("αβ_γ", "αβ_γ", None),
]


@pytest.mark.parametrize("suffix", [".vcf", ".vcf.gz"])
def test_vcf_id_column_kept_any_scheme(tmp_path, fasta, suffix):
    import pysam

    rows = [f"chr1\t{5 + i}\t{vid}\t{SEQ[4 + i]}\t{'G' if SEQ[4 + i] != 'G' else 'T'}\t.\t.\t."
            for i, (vid, _, _) in enumerate(IDS)]
    plain = tmp_path / "v.vcf"
    plain.write_text(HEADER + "".join(r + "\n" for r in rows), encoding="utf-8")
    path = plain
    if suffix == ".vcf.gz":
        path = tmp_path / "v.vcf.gz"
        pysam.tabix_compress(str(plain), str(path), force=True)
    r = _invoke("variants", "check", "--fasta", fasta, "--vcf", path, "--out", tmp_path / "t.parquet")
    assert r.exit_code == 0, r.output
    t = pd.read_parquet(tmp_path / "t.parquet")
    assert t["status"].eq("ok").all() and len(t) == len(IDS)
    assert t["id"].tolist() == [e for _, e, _ in IDS]
    assert t["rsid"].tolist() == [e for _, _, e in IDS]
    # our own table read back keeps both columns
    r = _invoke("variants", "check", "--fasta", fasta, "--vcf", tmp_path / "t.parquet", "--out", tmp_path / "u.parquet")
    assert r.exit_code == 0, r.output
    u = pd.read_parquet(tmp_path / "u.parquet")
    assert u["id"].tolist() == t["id"].tolist() and u["rsid"].tolist() == t["rsid"].tolist()


def test_table_id_column(tmp_path, fasta):
    pd.DataFrame({"chrom": ["chr1", "chr1"], "pos": [5, 6], "ref": [SEQ[4], SEQ[5]], "alt": ["T", "T"],
                  "ID": ["mine/1", "rs77"]}).to_csv(tmp_path / "v.tsv", sep="\t", index=False)
    r = _invoke("variants", "check", "--fasta", fasta, "--vcf", tmp_path / "v.tsv", "--out", tmp_path / "t.parquet")
    assert r.exit_code == 0, r.output
    t = pd.read_parquet(tmp_path / "t.parquet")
    assert t["id"].tolist() == ["mine/1", "rs77"] and t["rsid"].tolist() == [None, "rs77"]


def test_empty_input_says_no_variants(tmp_path, fasta):
    (tmp_path / "h.vcf").write_text(HEADER)
    r = _invoke("variants", "check", "--fasta", fasta, "--vcf", tmp_path / "h.vcf")
    assert r.exit_code == 0 and "no variants" in r.output
    for cmd in (["score", "--out", tmp_path / "s.h5ad"],
                ["harvest", "--layer", "blocks.0", "--store", tmp_path / "st"]):
        r = _invoke(*cmd[:1], "--model", "demo", "--fasta", fasta, "--variants", tmp_path / "h.vcf", *cmd[1:])
        assert r.exit_code == 1, r.output
        err = [ln for ln in r.output.splitlines() if ln.startswith("Error:")]
        assert len(err) == 1 and "no variants" in err[0]
    assert not (tmp_path / "s.h5ad").exists() and not (tmp_path / "st").exists()


def test_exit_codes_in_every_help():
    from biointerp.cli import COMMANDS, EXIT_CODES

    assert "Exit codes" in _invoke("--help").output
    for name in COMMANDS:
        r = _invoke(name, "--help")
        assert r.exit_code == 0 and "Exit codes: 0 success; 1 error" in r.output, name
        cmd = main.get_command(None, name)
        for sub in getattr(cmd, "commands", {}):
            out = _invoke(name, sub, "--help").output
            assert "Exit codes: 0 success" in out, f"{name} {sub}"
    assert "2 usage error" in EXIT_CODES
    assert _invoke("store", "info", "--no-such-option").exit_code == 2


def test_fai_beside_writable_else_cache_or_index_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("BIOINTERP_CACHE", str(tmp_path / "cache"))
    (tmp_path / "rw").mkdir()
    fa = tmp_path / "rw" / "ref.fa"
    fa.write_text(">chr1\n" + SEQ + "\n")
    assert Genome(fa).fetch("chr1", 1, 4) == "ACGT"
    assert (tmp_path / "rw" / "ref.fa.fai").exists()  # samtools' convention in a writable folder

    (tmp_path / "ro").mkdir()
    ro = tmp_path / "ro" / "ref.fa"
    ro.write_text(">chr1\n" + SEQ + "\n")
    os.chmod(tmp_path / "ro", stat.S_IRUSR | stat.S_IXUSR)
    try:
        g = Genome(ro)
        assert g.fetch("chr1", 1, 4) == "ACGT"
        assert not (tmp_path / "ro" / "ref.fa.fai").exists()
        assert str(g.index_path).startswith(str(tmp_path / "cache"))
        # --index-dir on the command line puts it where asked
        (tmp_path / "v.vcf").write_text(HEADER + "chr1\t5\t.\tA\tG\t.\t.\t.\n")
        r = _invoke("variants", "check", "--fasta", ro, "--vcf", tmp_path / "v.vcf", "--index-dir", tmp_path / "idx")
        assert r.exit_code == 0, r.output
        assert (tmp_path / "idx" / "ref.fa.fai").exists() and not (tmp_path / "ro" / "ref.fa.fai").exists()
    finally:
        os.chmod(tmp_path / "ro", stat.S_IRWXU)


def test_rsid_lookup_is_capped(tmp_path):
    import biointerp.db as vdb
    from biointerp.tables import make_scores_adata, write_scores

    n = 40
    var = pd.DataFrame({"chrom": "1", "pos": np.arange(100, 100 + n), "ref": "A", "alt": "G", "status": "ok",
                        "rsid": ["rs5"] * (n - 1) + ["rs6"]})
    var["variant_id"] = [f"1:{p}:A:G" for p in var["pos"]]
    write_scores(make_scores_adata(var, {"delta_ll": np.arange(n, dtype=np.float32)}), tmp_path / "s.h5ad")
    vdb.build([tmp_path / "s.h5ad"], tmp_path / "v.duckdb")
    with vdb.VariantDB(tmp_path / "v.duckdb") as db:
        res = db.rsid("rs5", limit=10)
        assert len(res.rows) == 10 and res.truncated
        assert len(db.rsid("rs5").rows) == n - 1 and not db.rsid("rs5").truncated  # under the default cap
        assert len(db.rsid("rs5", limit=None).rows) == n - 1
        assert len(db.query(rsid="rs5", limit=5)) == 5
        with pytest.raises(vdb.QueryError):
            db.rsid("rs5", limit=0)


def test_db_build_keeps_id_column(tmp_path, fasta):
    """The VCF ``ID`` travels from `variants check` through `score` into `db build` as ``id``, any scheme,
    beside ``rsid``; a database built before the column existed still opens and queries."""
    import shutil

    import duckdb

    import biointerp.db as vdb

    rows = [f"chr1\t{5 + i}\t{vid}\t{SEQ[4 + i]}\t{'G' if SEQ[4 + i] != 'G' else 'T'}\t.\t.\t."
            for i, (vid, _, _) in enumerate(IDS)]
    (tmp_path / "v.vcf").write_text(HEADER + "".join(r + "\n" for r in rows), encoding="utf-8")
    r = _invoke("score", "--model", "demo", "--fasta", fasta, "--variants", tmp_path / "v.vcf", "--window", "16",
                "--out", tmp_path / "s.h5ad")
    assert r.exit_code == 0, r.output
    r = _invoke("db", "build", tmp_path / "s.h5ad", "--out", tmp_path / "v.duckdb")
    assert r.exit_code == 0, r.output
    assert "not kept" not in r.output or " id" not in r.output.split("not kept")[1].split("\n")[0]
    with vdb.VariantDB(tmp_path / "v.duckdb") as db:
        got = {rec["variant_id"]: (rec["id"], rec["rsid"]) for rec in db.region("chr1:1-40").records()}
        assert "id" in db.metadata["columns"]
        assert "id" not in db.metadata["inputs"][0]["ignored_columns"]
    assert sorted(got.values(), key=str) == sorted(((e, s) for _, e, s in IDS), key=str)
    r = _invoke("db", "query", "chr1:5:A:G", "--db", tmp_path / "v.duckdb", "--format", "json")
    assert r.exit_code == 0 and '"id":"rs123"' in r.output, r.output

    # a table input's own ID column maps onto ``id`` too
    pd.DataFrame({"chrom": ["1", "1"], "pos": [5, 6], "ref": ["A", "C"], "alt": ["G", "G"], "ID": ["mine/1", "rs77"],
                  "score": [0.5, 0.25]}).to_parquet(tmp_path / "t.parquet")
    vdb.build([tmp_path / "t.parquet"], tmp_path / "t.duckdb", kind="table")
    with vdb.VariantDB(tmp_path / "t.duckdb") as db:
        assert [(x["id"], x["rsid"]) for x in db.region("1:1-10").records()] == [("mine/1", None), ("rs77", None)]

    # an older database (no ``id`` column, not in its metadata) is read with the columns it has
    old = tmp_path / "old.duckdb"
    shutil.copy(tmp_path / "v.duckdb", old)
    con = duckdb.connect(str(old))
    md = json.loads(con.execute("SELECT value FROM metadata WHERE key = 'columns'").fetchone()[0])
    con.execute("DROP VIEW variants_wide")
    con.execute("DROP INDEX variants_key_idx")
    con.execute("ALTER TABLE variants DROP COLUMN id")
    con.execute("CREATE INDEX variants_key_idx ON variants (key)")
    con.execute("UPDATE metadata SET value = ? WHERE key = 'columns'", [json.dumps([c for c in md if c != "id"])])
    con.close()
    with vdb.VariantDB(old) as db:
        res = db.lookup("chr1:5:A:G")
        assert "id" not in res.columns and res.records()[0]["rsid"] == "rs123"
