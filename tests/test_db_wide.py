"""Wide releases: synthetic EVEE-shaped shards, the wide index with heads in place or packed,
identity with a plain DuckDB scan of the shards, head metadata, CLI, and shards on S3/HTTP."""

from __future__ import annotations

import json
import os
import threading

import duckdb
import numpy as np
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import biointerp.db as vdb
from biointerp.cli import main
from biointerp.db.release import HEAD_VIEWS, locate, write_synthetic_release
from biointerp.db.wide import build_wide

N, WIDTH = 2400, 80


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    d = tmp_path_factory.mktemp("release")
    write_synthetic_release(d, N, width=WIDTH, n_shards=3, n_meta=20, row_group_size=300, seed=3)
    return d


@pytest.fixture(scope="module")
def dbs(release, tmp_path_factory):
    out = tmp_path_factory.mktemp("widedb")
    for store in ("inplace", "packed"):
        build_wide(release, out / f"{store}.duckdb", store=store)
    return {s: vdb.open(out / f"{s}.duckdb") for s in ("inplace", "packed")}


def test_synthetic_release_shape(release):
    rel = locate(release)
    man = json.loads((release / "manifest.json").read_text())
    assert [os.path.basename(s) for s in rel.shards] == [f"clean_shard_{i}.parquet" for i in range(3)]
    assert rel.heads_file and rel.heads_file.endswith("heads.feather")
    schemas = [pq.read_schema(s) for s in rel.shards]
    assert all(len(s) == WIDTH for s in schemas) and man["n_columns"] == WIDTH
    assert sum(pq.ParquetFile(s).metadata.num_rows for s in rel.shards) == N == man["n_rows"]
    names = schemas[0].names
    assert names[:5] == ["variant_id", "chrom", "pos", "ref", "alt"] and "pathogenicity" in names
    assert str(schemas[0].field("pathogenicity").type) == "float"
    # chromosome-balanced: every contig in exactly one shard
    chroms = [set(pq.read_table(s, columns=["chrom"]).column(0).to_pylist()) for s in rel.shards]
    assert all(not (a & b) for i, a in enumerate(chroms) for b in chroms[i + 1:])
    t = pq.read_table(rel.shards[0]).to_pandas()
    heads = feather.read_table(rel.heads_file).to_pandas()
    assert list(heads.columns)[:7] == ["head", "category", "kind", "n_classes", "group", "display", "description"]
    probe_cols = [c for c in t.columns if c.startswith(HEAD_VIEWS)]
    known = set(heads["head"])
    assert probe_cols and all(any(c.startswith(v) and c[len(v):] in known for v in HEAD_VIEWS) for c in probe_cols)
    nan_share = float(t[probe_cols].isna().to_numpy().mean())
    assert 0.1 < nan_share < 0.6, nan_share
    gt = t[[c for c in probe_cols if c.startswith("gt_")]].to_numpy()
    assert set(np.unique(gt[~np.isnan(gt)])) <= {0.0, 1.0}
    assert t["variant_id"].str.split(":").str[1].astype(int).equals(t["pos"])  # 0-based id, pos as in the id


def _plain_scan(release) -> dict:
    """The same shards through one plain DuckDB scan, rows keyed by 1-based variant id."""
    con = duckdb.connect()
    df = con.execute(f"""
        SELECT split_part(variant_id, ':', 1) AS chrom, CAST(split_part(variant_id, ':', 2) AS BIGINT) + 1 AS pos1,
               split_part(variant_id, ':', 3) AS r, split_part(variant_id, ':', 4) AS a, *
        FROM read_parquet('{release}/clean_shard_*.parquet')""").fetch_df()
    con.close()
    df.index = df.chrom + ":" + df.pos1.astype(str) + ":" + df.r + ":" + df.a
    return df


def test_identity_with_plain_scan_1000_queries(release, dbs):
    base = _plain_scan(release)
    rank = {f"chr{i}": i for i in range(1, 23)} | {"chrX": 23, "chrY": 24, "chrM": 25}
    base["rk"] = base.chrom.map(rank)
    base = base.sort_values(["rk", "pos1", "r", "a"])
    sources = dbs["inplace"].metadata["head_sources"]
    vals = base[sources].to_numpy(dtype=np.float64)
    obj = vals.astype(object)
    obj[np.isnan(vals)] = None
    patho = base.pathogenicity.astype(np.float64)
    expect = {vid: (None if np.isnan(p) else p, g, lab, tuple(h))
              for vid, p, g, lab, h in zip(base.index, patho, base.gene_name, base.label, obj)}
    ids, chrom, pos1, gene = base.index.to_numpy(), base.chrom.to_numpy(), base.pos1.to_numpy(), base.gene_name.to_numpy()
    rng = np.random.default_rng(0)
    genes = np.unique(gene)
    n_checked = {"variant": 0, "region": 0, "gene": 0}
    nb = len(dbs["inplace"].base_columns)
    for i in range(1000):
        db = dbs["packed" if i % 2 else "inplace"]
        kind = ("variant", "region", "gene")[i % 3]
        if kind == "variant":
            exp = [ids[rng.integers(len(ids))]]
            got = db.lookup(exp[0])
        elif kind == "region":
            j = rng.integers(len(ids))
            lo = max(1, int(pos1[j]) - int(rng.integers(0, 30_000)))
            hi = lo + int(rng.integers(0, 60_000))
            exp = list(ids[(chrom == chrom[j]) & (pos1 >= lo) & (pos1 <= hi)])
            got = db.region(f"{chrom[j]}:{lo}-{hi}")
        else:
            g = genes[rng.integers(len(genes))]
            sel = base[gene == g]
            exp = list(sel.sort_values(["pathogenicity", "rk", "pos1", "r", "a"],
                                       ascending=[False, True, True, True, True], na_position="last").index[:10])
            got = db.gene(g, top=10)
        assert [r[0] for r in got.rows] == exp, (kind, i)
        i_score, i_gene, i_label = (db.base_columns.index(c) for c in ("score", "gene", "label"))
        for r, vid in zip(got.rows, exp):
            e = expect[vid]
            assert (r[i_score], r[i_gene], r[i_label]) == e[:3], (kind, vid)
            assert r[nb:] == e[3], (kind, vid)  # every head column, NaN as None
        n_checked[kind] += 1
    assert min(n_checked.values()) >= 333


def test_head_values_capped_and_batched(release, dbs, tmp_path):
    """All-heads region results stop at max_head_values (truncated, a prefix of the full answer);
    in-place reads in column batches (tiny batch budget) give the same values as one read."""
    db = dbs["inplace"]
    chrom, pos = db._run("SELECT chrom, pos FROM variants ORDER BY gene LIMIT 1", []).rows[0]
    region = f"{chrom}:1-{pos + 1_000_000}"
    full = db.region(region, heads=False)
    assert len(full.rows) > 10
    capped = vdb.VariantDB(db.path, max_head_values=10 * len(db.heads))
    got = capped.region(region)
    assert got.truncated and len(got.rows) == 10
    assert [r[0] for r in got.rows] == [r[0] for r in full.rows[:10]]
    assert capped.region(region, heads=False).rows == full.rows  # no heads, no cap
    ref = db.region(region)
    store = capped._store
    store.batch_bytes, store.cache_bytes = 1, 0  # one column per read, nothing cached
    assert got.rows == ref.rows[:10]
    assert capped.region(region).rows == ref.rows[:10]
    capped.close()
    # packed store, few heads over many rows: served in place when that decodes less; same values
    few = db.heads[:5]
    packed = dbs["packed"]
    assert packed._store.inplace is not None
    locs = packed._run(f"SELECT shard, frow FROM variants WHERE chrom = '{chrom}'", []).rows
    assert packed._store.inplace.cost(locs, 5) < len(locs) * 80  # the in-place path is the one taken
    assert packed.region(region, heads=few).rows == db.region(region, heads=few).rows


def test_head_metadata_matches_heads_file(release, dbs):
    heads = feather.read_table(release / "heads.feather").to_pylist()
    by_name = {h["head"]: h for h in heads}
    for store in dbs.values():
        some = store._run("SELECT variant_id FROM variants USING SAMPLE 5 ROWS", []).rows
        for (vid,) in some:
            prof = store.profile(vid)
            assert len(prof) == len(store.heads)
            for r in prof.itertuples():
                col = r.column_name
                head = next((col[len(v):] for v in HEAD_VIEWS if col.startswith(v) and col[len(v):] in by_name), col)
                h = by_name[head]
                assert (r.head, r.display, r.group, r.description, r.category) == (
                    head, h["display"], h["group"], h["description"], h["category"])
                if h["predictor_threshold"] is not None:
                    assert r.threshold == pytest.approx(h["predictor_threshold"])


def test_cli_build_and_query_release(release, tmp_path):
    runner = CliRunner()
    out = tmp_path / "w.duckdb"
    r = runner.invoke(main, ["db", "build", str(release / "clean_shard_*.parquet"), "-o", str(out),
                             "--layout", "wide", "--head-store", "packed"])
    assert r.exit_code == 0, r.output
    assert "wide layout" in r.output and f"{N:,} variants" in r.output
    vid = pq.read_table(release / "clean_shard_1.parquet", columns=["variant_id"]).column(0)[7].as_py()
    r = runner.invoke(main, ["db", "query", "--db", str(out), vid, "--zero-based", "--format", "json"])
    assert r.exit_code == 0, r.output
    row = json.loads(r.output)[0]
    assert row["variant_id0"] == vid and len(row) > WIDTH - 30
    # the release as it is (folder with manifest.json), no build step
    r2 = runner.invoke(main, ["db", "query", "--db", str(release), vid, "--zero-based", "--format", "json",
                              "--heads", "none"])
    assert r2.exit_code == 0, r2.output
    assert json.loads(r2.output)[0]["variant_id0"] == vid
    r3 = runner.invoke(main, ["db", "heads", "--db", str(out), "--format", "json"])
    assert r3.exit_code == 0, r3.output
    assert {"display", "group", "description"} <= set(json.loads(r3.output)[0])
    r4 = runner.invoke(main, ["db", "query", "--db", str(out), vid, "--zero-based", "--profile", "--format", "json"])
    assert r4.exit_code == 0, r4.output
    prof = json.loads(r4.output)
    by_col = {p["column_name"]: p for p in prof}
    probe = next(c for c in by_col if c.startswith("score_"))
    assert by_col[probe]["value"] == row[probe] and by_col[probe]["display"]
    bad = runner.invoke(main, ["db", "build", str(tmp_path / "nothing_*.parquet"), "-o", str(tmp_path / "x.duckdb")])
    assert bad.exit_code != 0 and "Error:" in bad.output


# ------------------------------------------------------------------------------------------
# object storage: a local S3-compatible server (moto) started by the test


@pytest.fixture(scope="module")
def s3_server():
    moto_server = pytest.importorskip("moto.moto_server.werkzeug_app",
                                      reason="moto[server] not installed (dev extra): no local S3 server")
    from werkzeug.serving import make_server

    served = {"bytes": 0, "ranged": 0, "gets": 0}
    app = moto_server.DomainDispatcherApplication(moto_server.create_backend_app)

    def counting(environ, start_response):
        if environ.get("REQUEST_METHOD") == "GET":
            served["gets"] += 1
            served["ranged"] += "HTTP_RANGE" in environ
        body = app(environ, start_response)
        for chunk in body:
            if environ.get("REQUEST_METHOD") == "GET":
                served["bytes"] += len(chunk)
            yield chunk

    from werkzeug.serving import WSGIRequestHandler

    class Quiet(WSGIRequestHandler):
        def log_request(self, *a, **k):
            pass

    srv = make_server("127.0.0.1", 0, counting, threaded=True, request_handler=Quiet)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    yield f"http://127.0.0.1:{srv.server_port}", served
    srv.shutdown()


def test_api_heads_endpoint(release, dbs, tmp_path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from biointerp.db.serve import create_app

    path = dbs["packed"].path
    client = TestClient(create_app(path))
    heads = feather.read_table(release / "heads.feather").to_pylist()
    by_name = {h["head"]: h for h in heads}
    got = client.get("/heads").json()["results"]
    assert len(got) == len(dbs["packed"].heads)
    for r in got:
        if r["head"] in by_name:
            assert (r["display"], r["group"], r["description"]) == tuple(
                by_name[r["head"]][k] for k in ("display", "group", "description"))
    vid = dbs["packed"]._run("SELECT variant_id FROM variants LIMIT 1", []).rows[0][0]
    row = client.get(f"/variants/{vid}").json()["results"][0]
    assert set(dbs["packed"].heads) <= set(row)
    # the page's head descriptions come from the same metadata
    info = {h["name"]: h for h in client.get("/api/info").json()["heads"]}
    src = dict(zip(dbs["packed"].heads, dbs["packed"].metadata["head_sources"]))
    col = next(c for c in info if c.startswith("score_"))
    h = by_name[src[col].removeprefix("score_")]
    assert (info[col]["display"], info[col]["group"], info[col]["description"]) == (
        h["display"], h["group"], h["description"])
    page_row = client.get(f"/api/variant/{vid}").json()["results"][0]
    assert len(page_row["heads"]) == len(dbs["packed"].heads)


def test_s3_and_http_release(release, dbs, s3_server, monkeypatch, tmp_path):
    import boto3

    from biointerp.db import remote

    url, served = s3_server
    for k, v in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": "us-east-1",
                 "AWS_ENDPOINT_URL": url}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(remote, "_FS_CACHE", {})
    s3 = boto3.client("s3", endpoint_url=url)
    s3.create_bucket(Bucket="evee")
    total = 0
    for p in sorted(release.iterdir()):
        s3.upload_file(str(p), "evee", f"release/{p.name}", ExtraArgs={"ACL": "public-read"})
        total += p.stat().st_size
    served.update(bytes=0, ranged=0, gets=0)
    meta = build_wide("s3://evee/release/", tmp_path / "s3.duckdb")
    assert meta["shards"][0].startswith("s3://evee/release/clean_shard_0")
    assert meta["heads_file"] == "s3://evee/release/heads.feather"
    build_bytes = served["bytes"]
    assert served["ranged"] > 0 and build_bytes < 0.5 * total, (build_bytes, total)  # key columns only
    local = dbs["inplace"]
    with vdb.VariantDB(tmp_path / "s3.duckdb") as db:
        vid = local._run("SELECT variant_id FROM variants USING SAMPLE reservoir(1 ROWS) REPEATABLE (3)", []).rows[0][0]
        served.update(bytes=0)
        got = db.lookup(vid)
        assert got.rows == local.lookup(vid).rows
        assert served["bytes"] < 0.5 * total  # one row group, not the shard
        assert db.profile(vid)["display"].tolist() == local.profile(vid)["display"].tolist()
    r = CliRunner().invoke(main, ["db", "query", "--db", "s3://evee/release/", vid, "--heads", "none",
                                  "--format", "json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)[0]["variant_id"] == vid
    # the same release over plain HTTP(S): manifest URL, ranged GETs
    served.update(bytes=0, ranged=0)
    with vdb.open(f"{url}/evee/release/manifest.json") as db:
        g = local._run("SELECT gene FROM variants USING SAMPLE reservoir(1 ROWS) REPEATABLE (5)", []).rows[0][0]
        assert db.gene(g, top=5).rows == local.gene(g, top=5).rows
    assert served["ranged"] > 0
