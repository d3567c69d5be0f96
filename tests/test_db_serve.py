"""The read-only HTTP API, started for real (``biointerp db serve`` in a subprocess on loopback)."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import threading
import time
from urllib.parse import quote

import httpx
import numpy as np
import pyarrow.parquet as pq
import pytest

import biointerp.db as vdb
from biointerp.db.evee import synthetic_evee


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    d = tmp_path_factory.mktemp("serve")
    ev = synthetic_evee(6000, n_heads=8, seed=3)
    pq.write_table(ev, d / "evee.parquet")
    db = d / "variants.duckdb"
    vdb.build([d / "evee.parquet"], db)
    before = _sha(db)
    port = _free_port()
    log = open(d / "server.log", "wb")  # a file, not a pipe: an unread pipe would block the access log
    proc = subprocess.Popen(
        [sys.executable, "-m", "biointerp", "db", "serve", "--db", str(db), "--port", str(port),
         "--max-results", "500", "--max-region-bp", "2000000"],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        try:
            if httpx.get(base + "/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail("server did not start: " + (d / "server.log").read_text()[-2000:])
        time.sleep(0.2)
    yield {"base": base, "db": db, "sha": before, "evee": ev.to_pandas(), "proc": proc}
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


def test_endpoints(server):
    base, ev = server["base"], server["evee"]
    with httpx.Client(base_url=base, timeout=10) as c:
        h = c.get("/health").json()
        assert h["status"] == "ok" and h["rows"] == 6000 and h["n_heads"] == 14
        vid0 = ev.variant_id[42]
        chrom, p, r, a = vid0.split(":")
        one = c.get(f"/variants/{vid0}", params={"zero_based": "true"}).json()
        assert one["count"] == 1
        row = one["results"][0]
        assert row["pos"] == int(p) + 1 and row["variant_id0"] == vid0
        assert row["score"] == pytest.approx(float(ev.pathogenicity[42]), rel=1e-6)
        assert row["score_3"] == pytest.approx(float(ev.score_3[42]), rel=1e-6)
        alias = c.get(f"/variants/{chrom[3:]}-{int(p) + 1}-{r}-{a}", params={"heads": ""}).json()
        assert alias["results"][0]["variant_id"] == row["variant_id"] and "score_3" not in alias["results"][0]
        assert c.get(f"/variants/{chrom}:{int(p) + 1}:{r}:NNN").status_code == 404
        reg = c.get("/variants", params={"region": "chr3:1-2000000", "limit": 500}).json()
        parts = ev.variant_id.str.split(":", expand=True)
        n_exp = int(((parts[0] == "chr3") & ((parts[1].astype(int) + 1) <= 2_000_000)).sum())
        assert reg["count"] == n_exp > 0 and not reg["truncated"]
        small = c.get("/variants", params={"region": "chr3:1-2000000", "limit": 1}).json()
        assert small["count"] == 1 and small["truncated"]
        g = c.get("/genes/GENE7", params={"top": 5}).json()
        scores = [x["score"] for x in g["results"]]
        assert scores == sorted(ev[ev.gene == "GENE7"].pathogenicity.astype(float), reverse=True)[:5]
        assert c.get("/genes/NOSUCHGENE").status_code == 404
        rs = ev.rsid.dropna().iloc[0]
        s = c.get("/search", params={"q": rs}).json()
        assert s["kind"] == "rsid" and s["count"] == 1
        assert c.get("/search", params={"q": "GENE7"}).json()["kind"] == "gene"
        assert c.get("/docs").status_code == 200
        paths = c.get("/openapi.json").json()["paths"]
        assert {"/health", "/variants/{variant_id}", "/variants", "/genes/{gene}", "/search"} <= set(paths)


def test_exact_lookup_fast_path_matches_the_route(server):
    """GET /variants/{id} without parameters is answered by a plain-ASGI fast path; with any
    parameter it goes through the FastAPI route. Same status, headers' type and bytes."""
    ev = server["evee"]
    with httpx.Client(base_url=server["base"], timeout=10) as c:
        for vid in [f"{ev.variant_id[7].split(':')[0]}:{int(ev.variant_id[7].split(':')[1]) + 1}:"
                    f"{ev.variant_id[7].split(':')[2]}:{ev.variant_id[7].split(':')[3]}", "chr1:1:A:C", "nonsense",
                    "3-5-G-T", quote("chr1:1:A:C'; DROP TABLE variants; --")]:
            fast, slow = c.get(f"/variants/{vid}"), c.get(f"/variants/{vid}", params={"heads": "all"})
            assert (fast.status_code, fast.headers["content-type"], fast.content) == (
                slow.status_code, slow.headers["content-type"], slow.content), vid


HOSTILE = [
    "/variants/1' OR '1'='1",
    "/variants/chr1:1:A:C'; DROP TABLE variants; --",
    "/variants/" + quote("chr1:1:A:C\x00"),
    "/variants/" + "A" * 5000,
    "/variants/" + quote("chr1:１２:A:C"),
    "/variants/" + quote("ß∂ƒ©:1:A:C"),
    "/variants/chr1:99999999999999999999:A:C",
    "/variants/chr1:-5:A:C",
    "/variants?region=" + quote("chr1:1-3000000000"),
    "/variants?region=" + quote("chr1:500-100"),
    "/variants?region=" + quote("chr1:0-10"),
    "/variants?region=" + quote("chr1:1-10; DROP TABLE variants"),
    "/variants?region=" + quote("chr1:4294967290-4294967299"),
    "/variants?region=" + "x" * 3000,
    "/variants?region=chr1:1-100&limit=-1",
    "/variants?region=chr1:1-100&limit=100000000",
    "/variants?region=chr1:1-100&min_score=nan",
    "/variants?region=chr1:1-100&heads=" + quote("score_0,\"; DROP TABLE variants"),
    "/variants",
    "/genes/" + quote("BRCA1'; DROP TABLE variants; --"),
    "/genes/" + quote("BRCA1\u202e"),
    "/genes/" + "G" * 1000,
    "/genes/GENE1?top=0",
    "/search?q=" + quote("' OR 1=1 --"),
    "/search?q=" + quote("🧬🧬🧬"),
    "/search?q=" + "q" * 10000,
    "/search?q=",
    "/search",
    "/../../etc/passwd",
    "/variants/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
]


def test_hostile_inputs_4xx_and_db_unchanged(server):
    with httpx.Client(base_url=server["base"], timeout=10) as c:
        for url in HOSTILE:
            r = c.get(url)
            assert 400 <= r.status_code < 500, (url[:80], r.status_code, r.text[:200])
            assert "detail" in r.json(), url[:80]
        assert c.get("/health").json()["status"] == "ok"
    assert _sha(server["db"]) == server["sha"], "the database file changed"


def test_bounded_load(server):
    """20 concurrent clients, 5,000 requests of mixed kinds: no 5xx, latency p99 recorded."""
    base, ev = server["base"], server["evee"]
    rng = np.random.default_rng(0)
    parts = ev.variant_id.str.split(":", expand=True)
    urls = []
    for i in range(5000):
        j = int(rng.integers(len(ev)))
        kind = i % 5
        if kind in (0, 1):
            urls.append(f"/variants/{ev.variant_id[j]}?zero_based=true")
        elif kind == 2:
            s = int(parts[1][j])
            urls.append(f"/variants?region={parts[0][j]}:{max(1, s - 50000)}-{s + 50000}")
        elif kind == 3:
            urls.append(f"/genes/{ev.gene[j]}?top=50")
        else:
            urls.append(f"/search?q={ev.gene[j]}")
    lat: list[float] = []
    codes: list[int] = []
    lock = threading.Lock()

    def worker(chunk):
        with httpx.Client(base_url=base, timeout=30) as c:
            for u in chunk:
                t = time.perf_counter()
                r = c.get(u)
                dt = time.perf_counter() - t
                with lock:
                    lat.append(dt)
                    codes.append(r.status_code)

    threads = [threading.Thread(target=worker, args=(urls[k::20],)) for k in range(20)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    assert len(codes) == 5000
    assert not [c for c in codes if c >= 500], "server errors under load"
    assert all(c == 200 for c in codes)
    p50, p99 = np.percentile(np.array(lat) * 1000, [50, 99])
    print(f"\nload: 5000 requests, 20 clients, {wall:.1f}s ({5000 / wall:.0f} req/s), p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    assert server["proc"].poll() is None
    assert _sha(server["db"]) == server["sha"]
