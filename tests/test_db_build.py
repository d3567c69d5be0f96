"""Variant database: build from our AnnData tables and EVEE shards, round trip through exports, queries, CLI."""

from __future__ import annotations

import json

import duckdb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pysam
import pytest
from click.testing import CliRunner

import biointerp.db as vdb
from biointerp.cli import main
from biointerp.db.evee import detect_kind, synthetic_evee
from biointerp.tables import make_scores_adata, write_scores

N_EVEE = 3000


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Two EVEE-schema shards (0-based ids, chr-prefixed) and one of our h5ad tables (1-based, no prefix)."""
    d = tmp_path_factory.mktemp("dbin")
    ev = synthetic_evee(N_EVEE, n_heads=6, seed=11)
    pq.write_table(ev.slice(0, 1700), d / "evee-00000.parquet")
    pq.write_table(ev.slice(1700), d / "evee-00001.parquet")
    rng = np.random.default_rng(5)
    n = 400
    pos = np.sort(rng.choice(np.arange(1_000, 90_000), size=n, replace=False))
    status = np.where(rng.random(n) < 0.1, "ref_mismatch", "ok")
    var = pd.DataFrame({
        "chrom": "13", "pos": pos, "ref": "A", "alt": "G",
        "gene": np.where(pos < 40_000, "BRCA2", "ZAR1L"), "label": "other", "status": status,
        "status_detail": np.where(status == "ok", "", "REF does not match"), "consequence": "missense_variant",
    })
    var["variant_id"] = [f"13:{p}:A:G" for p in pos]
    scores = {"delta_ll": rng.standard_normal(n).astype(np.float32),
              "pathogenicity": rng.random(n).astype(np.float32),
              "probe_head_a": rng.standard_normal(n).astype(np.float32)}
    ad = make_scores_adata(var, scores, uns={"model": "demo", "probe": "probe.safetensors"})
    write_scores(ad, d / "ours.h5ad")
    return {"dir": d, "evee": ev, "ours": ad}


@pytest.fixture(scope="module")
def built(inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("db") / "variants.duckdb"
    d = inputs["dir"]
    meta = vdb.build([d / "evee-00000.parquet", d / "evee-00001.parquet", d / "ours.h5ad"], out)
    return out, meta


def _expected(inputs) -> pd.DataFrame:
    """The rows every output must hold, computed independently of the build code (pandas only)."""
    ev = inputs["evee"].to_pandas()
    parts = ev["variant_id"].str.split(":", expand=True)
    e = pd.DataFrame({"chrom": parts[0], "pos": parts[1].astype(int) + 1, "ref": parts[2], "alt": parts[3],
                      "score": ev["pathogenicity"].astype(np.float32)})
    for c in ev.columns:
        if c.startswith(("score_", "ref_score_", "var_score_", "gt_")):
            e[c] = ev[c]
    o = inputs["ours"]
    X = np.asarray(o.X)
    names = list(o.var_names)
    f = pd.DataFrame({"chrom": o.obs["chrom"].astype(str).values, "pos": o.obs["pos"].astype(int).values,
                      "ref": o.obs["ref"].values, "alt": o.obs["alt"].values,
                      "score": X[:, names.index("pathogenicity")],
                      "delta_ll": X[:, names.index("delta_ll")], "probe_head_a": X[:, names.index("probe_head_a")]})
    out = pd.concat([e, f], ignore_index=True)
    out["variant_id"] = out.chrom + ":" + out.pos.astype(str) + ":" + out.ref + ":" + out.alt
    return out.set_index("variant_id")


def _assert_same(got: pd.DataFrame, exp: pd.DataFrame, cols: list[str]) -> None:
    assert got.index.is_unique, "a variant appears more than once"
    assert set(got.index) == set(exp.index)
    g = got.loc[exp.index]
    for c in cols:
        a = pd.to_numeric(g[c], errors="coerce").to_numpy(np.float64)
        b = exp[c].to_numpy(np.float64)
        assert np.array_equal(np.isnan(a), np.isnan(b)), c
        m = ~np.isnan(b)
        assert np.array_equal(a[m].astype(np.float32), b[m].astype(np.float32)), c


def test_detect_kind():
    assert detect_kind(["variant_id", "gene", "pathogenicity", "score_0", "gt_1"]) == "evee"
    assert detect_kind(["variant_id", "chrom", "pos", "ref", "alt", "status", "delta_ll"]) == "ours"
    assert detect_kind(["chrom", "pos", "ref", "alt", "cadd"]) == "table"


def test_round_trip_db_and_exports(inputs, built, tmp_path):
    out, meta = built
    exp = _expected(inputs)
    assert meta["n_rows"] == len(exp) == N_EVEE + 400
    heads = [f"score_{j}" for j in range(6)] + ["gt_0", "var_score_1", "delta_ll", "probe_head_a"]
    with duckdb.connect(str(out), read_only=True) as con:
        db = con.execute("SELECT * EXCLUDE (key) FROM variants_wide").fetch_df().set_index("variant_id")
        keys = con.execute("SELECT key FROM variants").fetchnumpy()["key"]
        idx = [r[0] for r in con.execute("SELECT index_name FROM duckdb_indexes()").fetchall()]
    assert np.all(np.diff(keys) >= 0), "rows must be sorted by (chrom, pos)"
    assert "variants_key_idx" in idx
    _assert_same(db, exp, ["score", *heads])
    # non-ok rows are kept with NULL scores
    bad = db[db.status != "ok"]
    assert len(bad) == int((inputs["ours"].obs.status != "ok").sum()) > 0
    assert bad["score"].isna().all() and bad["delta_ll"].isna().all()
    # 0-based id column
    assert (db["variant_id0"] == db.chrom + ":" + (db.pos - 1).astype(str) + ":" + db.ref + ":" + db.alt).all()

    pdir = vdb.export_parquet(out, tmp_path / "pq")
    files = sorted(pdir.rglob("*.parquet"))
    assert {f.parent.name for f in files} == {f"chrom={c}" for c in exp.chrom.unique()}
    px = pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True).set_index("variant_id")
    _assert_same(px, exp, ["score", *heads])

    tsv = vdb.export_tsv(out, tmp_path / "v.tsv.gz")
    tbx = pysam.TabixFile(str(tsv))
    header = tbx.header[-1].lstrip("#").split("\t")
    assert header[:5] == ["chrom", "pos", "ref", "alt", "score"]
    rows = [ln.split("\t") for c in tbx.contigs for ln in tbx.fetch(c)]
    tx = pd.DataFrame(rows, columns=header).replace(".", np.nan).set_index("variant_id")
    _assert_same(tx, exp, ["score", *heads])
    # a tabix region fetch returns the same rows as our region query
    with vdb.open(out) as v:
        ours = v.region("chr17:1-20000000", heads=False)
    assert len(ours.rows) == sum(1 for _ in tbx.fetch("chr17", 0, 20_000_000)) > 0


def test_metadata_provenance(built, inputs):
    out, meta = built
    with vdb.open(out) as v:
        md = v.metadata
    assert md["model"] == "demo" and md["probe"] == "probe.safetensors"
    kinds = [i["kind"] for i in md["inputs"]]
    assert kinds == ["evee", "evee", "ours"]
    assert all(len(i["sha256_16"]) == 16 for i in md["inputs"])
    assert sum(i["rows"] for i in md["inputs"]) == md["n_rows"]
    assert md["inputs"][0]["zero_based_ids"] is True and md["inputs"][2]["zero_based_ids"] is False
    assert set(md["score_source"]) == {"pathogenicity"}
    assert "clinical_significance" not in md["inputs"][0]["ignored_columns"]


def test_queries(built, inputs):
    out, _ = built
    ev = inputs["evee"].to_pandas()
    with vdb.open(out) as v:
        vid0 = ev.variant_id[10]
        c, p, r, a = vid0.split(":")
        one = v.query(vid0, zero_based=True)
        assert len(one) == 1 and one.pos[0] == int(p) + 1
        assert one.score[0] == pytest.approx(float(ev.pathogenicity[10]))
        assert one.clinvar_significance[0] == ev.clinical_significance[10]
        assert one.label[0] == ("pathogenic" if ev.label[10] == 1 else "benign")
        # every accepted id form and contig alias finds the same row
        for form in (f"{c}:{int(p) + 1}:{r}:{a}", f"{c[3:]}-{int(p) + 1}-{r}-{a}", f"{c[3:]}_{int(p) + 1}_{r}_{a}"):
            assert v.query(form).variant_id.tolist() == one.variant_id.tolist()
        assert v.query("chr13:" + str(inputs["ours"].obs.pos.iloc[0]) + ":A:G").shape[0] == 1
        assert v.query(f"{c}:{int(p) + 1}:{r}:N").empty
        # region: exactly the rows with start <= pos <= end
        parts = ev.variant_id.str.split(":", expand=True)
        pos1 = parts[1].astype(int) + 1
        m = (parts[0] == "chr2") & pos1.between(1_000_000, 60_000_000)
        reg = v.query(region="2:1,000,000-60,000,000", heads=False)
        assert sorted(reg.pos) == sorted(pos1[m]) and len(reg) > 0
        lim = v.region("chr2:1-60000000", limit=3)
        assert len(lim.rows) == 3 and lim.truncated
        filt = v.query(region="chr2:1-60000000", min_score=0.5, max_score=0.9)
        m2 = (parts[0] == "chr2") & (pos1 <= 60_000_000) & ev.pathogenicity.between(0.5, 0.9)
        assert len(filt) == int(m2.sum()) > 0 and filt.score.between(0.5, 0.9).all()
        # gene top-N ordered by score, NULLs last
        top = v.query(gene="GENE3", top=5)
        exp = ev[ev.gene == "GENE3"].pathogenicity.sort_values(ascending=False).head(5).to_numpy(np.float32)
        assert np.array_equal(top.score.to_numpy(np.float32), exp)
        brca2 = v.query(gene="brca2", top=1000)
        assert brca2.score.isna().to_numpy().tolist() == sorted(brca2.score.isna().tolist())
        # rsID
        rs = ev.rsid.dropna().iloc[7]
        hit = v.query(rsid=rs, heads=["score_1"])
        assert hit.variant_id0.tolist() == ev.variant_id[ev.rsid == rs].tolist()
        assert list(hit.columns)[-1] == "score_1"
        # search guesses the kind
        assert v.search(rs)[0] == "rsid" and v.search("GENE3")[0] == "gene"
        assert v.search("chr2:1-100000")[0] == "region" and v.search(vid0)[0] == "variant"
        for bad in ("chr1:1:A", "'; DROP TABLE variants; --", "x" * 500):
            with pytest.raises(vdb.QueryError):
                v.query(bad)
        with pytest.raises(vdb.QueryError):
            v.query(region="chr1:500-100")
        with pytest.raises(vdb.QueryError):
            v.query(gene="BRCA2", rsid="rs1")


def test_cli_build_query_export(inputs, tmp_path):
    r = CliRunner()
    d = inputs["dir"]
    out = tmp_path / "c.duckdb"
    res = r.invoke(main, ["db", "build", str(d / "ours.h5ad"), "-o", str(out), "--heads", "delta_*",
                          "--export-tsv", str(tmp_path / "c.tsv.gz"), "--export-parquet", str(tmp_path / "cpq")])
    assert res.exit_code == 0, res.output
    assert "400 variants" in res.output and "probe_head_a" in res.output  # reported as not kept
    assert (tmp_path / "c.tsv.gz.tbi").exists() and list((tmp_path / "cpq").rglob("*.parquet"))
    res = r.invoke(main, ["db", "build", str(d / "ours.h5ad"), "-o", str(out)])
    assert res.exit_code != 0 and "--force" in res.output
    vid = inputs["ours"].obs_names[3]
    res = r.invoke(main, ["db", "query", "--db", str(out), vid.replace("13:", "chr13-").replace(":", "-"),
                          "--format", "json"])
    assert res.exit_code == 0, res.output
    rec = json.loads(res.output)
    assert rec[0]["variant_id"] == vid and set(rec[0]) >= {"score", "delta_ll"}
    res = r.invoke(main, ["db", "query", "--db", str(out), "--gene", "BRCA2", "--top", "3", "--format", "tsv",
                          "--heads", "none"])
    assert res.exit_code == 0 and len(res.output.strip().splitlines()) == 4
    res = r.invoke(main, ["db", "query", "--db", str(out), "--region", "13:1-50000", "--format", "parquet",
                          "-o", str(tmp_path / "q.parquet")])
    assert res.exit_code == 0, res.output
    assert len(pd.read_parquet(tmp_path / "q.parquet")) == int((inputs["ours"].obs.pos <= 50000).sum())
    res = r.invoke(main, ["db", "query", "--db", str(out), "chr13:12:A"])
    assert res.exit_code == 2 and "not a variant id" in res.output
    res = r.invoke(main, ["db", "query", "--db", str(tmp_path / "missing.duckdb"), "1:2:A:C"])
    assert res.exit_code == 1 and "db build" in res.output
    res = r.invoke(main, ["db", "build", str(tmp_path / "q.parquet"), "-o", str(tmp_path / "x.duckdb"),
                          "--score-column", "nope"])
    assert res.exit_code == 1 and "nope" in res.output
    res = r.invoke(main, ["db", "export", "--db", str(out)])
    assert res.exit_code == 2 and "--parquet" in res.output


def test_annotate_multiallelic_and_aliases(built, inputs, tmp_path):
    """Split ALTs are suffix-trimmed (TGG>AGG meets T>A), contigs match by alias, INFO '.' is replaced."""
    out, _ = built
    ev = inputs["evee"].to_pandas()
    c, p0, r, a = ev.variant_id[0].split(":")
    p = int(p0) + 1
    other = {"A": "C", "C": "G", "G": "T", "T": "A"}[a]
    other = other if other != r else {"A": "G", "C": "T", "G": "A", "T": "C"}[r]
    lines = ["##fileformat=VCFv4.2", "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO",
             f"{c[3:]}\t{p}\t.\t{r}GG\t{a}GG,{other}GG\t.\t.\t.",          # first ALT in the DB, second not
             f"{c}\t{p}\t.\t{r}\t{a}\t.\t.\tDP=3",                         # same variant, single ALT
             f"chrUn_x\t{p}\t.\t{r}\t{a}\t.\t.\t."]                         # unknown contig: passed through
    vin = tmp_path / "m.vcf"
    vin.write_text("\n".join(lines) + "\n")
    s = vdb.annotate(out, vin, tmp_path / "m.vcf.gz", heads=["score_2"])
    assert (s["records"], s["annotated_records"], s["matched_alleles"], s["unknown_contig_records"]) == (3, 2, 2, 1)
    body = [ln.split("\t") for ln in pysam.BGZFile(str(tmp_path / "m.vcf.gz")).read().decode().splitlines()
            if not ln.startswith("#")]
    exp = str(np.float32(ev.pathogenicity[0]))  # shortest float32 repr
    assert body[0][7] == f"BI_SCORE={exp},.;BI_LABEL={'pathogenic' if ev.label[0] else 'benign'},.;" \
                         f"BI_SCORE_2={str(np.float32(ev.score_2[0]))},."
    assert body[1][7].startswith(f"DP=3;BI_SCORE={exp};")
    assert body[2][7] == "."


def test_open_parquet_shards_directly(inputs):
    """biointerp.db.open on EVEE shards builds a temporary database and removes it on close."""
    shard = inputs["dir"] / "evee-00001.parquet"
    db = vdb.open(shard)
    tmp = db.path.parent
    ev = inputs["evee"].to_pandas().iloc[1700:]
    assert db.count() == len(ev)
    assert db.query(ev.variant_id.iloc[5], zero_based=True).shape[0] == 1
    db.close()
    assert not tmp.exists()


def test_build_from_our_parquet(inputs, tmp_path):
    """Our Parquet layout (tables.write_scores -> scores_frame) maps like the .h5ad it came from."""
    pq_path = write_scores(inputs["ours"], tmp_path / "ours.parquet")
    meta = vdb.build([pq_path], tmp_path / "p.duckdb")
    assert meta["inputs"][0]["kind"] == "ours" and meta["score_source"] == ["pathogenicity"]
    assert sorted(meta["heads"]) == ["delta_ll", "probe_head_a"]
    with vdb.open(tmp_path / "p.duckdb") as db:
        got = db.query(region="13:1-100000").set_index("variant_id")
    obs = inputs["ours"].obs
    X = np.asarray(inputs["ours"].X)
    assert sorted(got.index) == sorted(obs.index)
    g = got.loc[obs.index]
    for j, name in enumerate(inputs["ours"].var_names):
        col = "score" if name == "pathogenicity" else name
        assert np.array_equal(g[col].to_numpy(np.float32), X[:, j], equal_nan=True), name
    assert (g.status.values == obs.status.values).all()
