"""Benchmark the HTTP API of ``biointerp db serve``: the current code against a named baseline commit.

Both servers run for real (``python -m biointerp db serve`` on loopback) over the same database.
The baseline is the package as it was at ``--baseline-ref`` (extracted with ``git archive``), so
"before" and "after" are measured in one run on the same machine state.
The baseline runs twice: as ``biointerp db serve`` at that commit in today's environment
(uvicorn picks httptools/uvloop when installed) and as it ran before they were installed
(``base-h11``: uvicorn's pure-Python h11 parser, asyncio loop, access log on). Reported per server:

* sequential exact look-ups (one client, keep-alive): p50/p99 ms;
* 20 concurrent clients (keep-alive connections), a mix of exact look-ups, 100 kb regions,
  gene top-50 and gene searches (as in tests/test_db_serve.py): p50/p99 ms and requests/s;
* server CPU time per request (user + system, server and worker processes): on a shared,
  busy machine the wall-clock figures move with the other tenants, this one much less.

The load generator is a small asyncio HTTP/1.1 client (one process, about 30 us of CPU per
request), so the figures are the server's, not an HTTP library's. Responses of both servers
are compared (parsed JSON) on a sample of URLs; the script exits non-zero when they differ.

    python benchmarks/bench_serve.py --db variants.duckdb          # an existing database
    python benchmarks/bench_serve.py --rows 200000                 # build a synthetic one first
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import numpy as np

REPO = Path(__file__).resolve().parents[1]
BASELINE_REF = "e0bb00a"  # main before the browser page (issue #15): single worker, FastAPI threadpool


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


#: the baseline as it ran before httptools/uvloop were installed: its own create_app and uvicorn
#: settings (log level info, access log on) with uvicorn's pure-Python h11 parser and asyncio loop
H11_LAUNCH = ("import sys, uvicorn; from biointerp.db.serve import create_app; "
              "uvicorn.run(create_app(sys.argv[1], max_results=1000), host='127.0.0.1', port=int(sys.argv[2]), "
              "log_level='info', http='h11', loop='asyncio')")


def start_server(db: Path, pythonpath: str, extra: list[str], log: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": pythonpath, "PYTHONUNBUFFERED": "1"}
    cmd = ([sys.executable, "-c", H11_LAUNCH, str(db), str(port)] if extra == ["h11"] else
           [sys.executable, "-m", "biointerp", "db", "serve", "--db", str(db), "--port", str(port), *extra,
            "--max-results", "1000"])
    proc = subprocess.Popen(cmd, stdout=open(log, "wb"), stderr=subprocess.STDOUT, env=env)
    deadline = time.time() + 120
    while True:
        try:
            status, _ = asyncio.run(fetch_once(port, "/health"))
            if status == 200:
                return proc, port
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            raise SystemExit(f"server did not start: {log.read_text()[-2000:]}")
        time.sleep(0.3)


async def _request(reader, writer, path: str) -> tuple[int, bytes]:
    writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for ln in lines[1:]:
        if ln[:15].lower() == b"content-length:":
            length = int(ln[15:])
    body = await reader.readexactly(length)
    return status, body


async def fetch_once(port: int, path: str) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        return await _request(reader, writer, path)
    finally:
        writer.close()


async def _client(port: int, urls: list[str], lat: list, codes: list) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for u in urls:
            t = time.perf_counter()
            status, _ = await _request(reader, writer, u)
            lat.append(time.perf_counter() - t)
            codes.append(status)
    finally:
        writer.close()


async def _load(port: int, urls: list[str], clients: int) -> tuple[list, list, float]:
    lat: list[float] = []
    codes: list[int] = []
    t0 = time.perf_counter()
    await asyncio.gather(*[_client(port, urls[k::clients], lat, codes) for k in range(clients)])
    return lat, codes, time.perf_counter() - t0


def load(port: int, urls: list[str], clients: int) -> dict:
    lat, codes, wall = asyncio.run(_load(port, urls, clients))
    bad = [c for c in codes if c != 200]
    ms = np.asarray(lat) * 1000
    return {"requests": len(codes), "non_200": len(bad), "wall_s": wall, "req_per_s": len(codes) / wall,
            "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99))}


def make_urls(db_path: Path, n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    import duckdb

    con = duckdb.connect(str(db_path), read_only=True)
    rows = con.execute("SELECT variant_id, chrom, pos, gene FROM variants USING SAMPLE reservoir(2000 ROWS) "
                       "REPEATABLE (11)").fetchall()
    con.close()
    rng = np.random.default_rng(seed)
    mixed, exact = [], []
    for i in range(n):
        vid, chrom, pos, gene = rows[int(rng.integers(len(rows)))]
        kind = i % 5
        if kind in (0, 1):
            mixed.append(f"/variants/{quote(vid)}")
        elif kind == 2:
            mixed.append(f"/variants?region={chrom}:{max(1, pos - 50_000)}-{pos + 50_000}")
        elif kind == 3:
            mixed.append(f"/genes/{quote(gene or 'NONE')}?top=50")
        else:
            mixed.append(f"/search?q={quote(gene or 'NONE')}")
        exact.append(f"/variants/{quote(vid)}")
    return mixed, exact


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a server and its worker processes (robust to a busy machine,
    where wall-clock figures mostly measure the other tenants)."""
    import psutil

    p = psutil.Process(pid)
    total = 0.0
    for q in [p, *p.children(recursive=True)]:
        try:
            t = q.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def measure(name: str, proc: subprocess.Popen, port: int, mixed: list[str], exact: list[str], clients: int) -> dict:
    asyncio.run(_load(port, mixed[:200], clients))  # warm-up: buffer pool, code paths
    c0 = cpu_seconds(proc.pid)
    seq = load(port, exact, 1)
    c1 = cpu_seconds(proc.pid)
    conc = load(port, mixed, clients)
    c2 = cpu_seconds(proc.pid)
    seq["server_cpu_ms_per_request"] = (c1 - c0) * 1000 / seq["requests"]
    conc["server_cpu_ms_per_request"] = (c2 - c1) * 1000 / conc["requests"]
    print(f"  {name:9s} sequential exact p50 {seq['p50_ms']:6.2f} ms  p99 {seq['p99_ms']:6.2f} ms | "
          f"{clients} clients, {conc['requests']} mixed requests: p50 {conc['p50_ms']:6.2f} ms  "
          f"p99 {conc['p99_ms']:7.2f} ms  {conc['req_per_s']:7.0f} req/s  (non-200: {conc['non_200']}) | server CPU "
          f"per request: exact {seq['server_cpu_ms_per_request']:.2f} ms, mixed {conc['server_cpu_ms_per_request']:.2f} ms")
    return {"sequential_exact": seq, "concurrent_mixed": conc}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", type=Path, default=None, help="existing database (else build a synthetic one)")
    ap.add_argument("--rows", type=int, default=200_000, help="rows of the synthetic database when --db is not given")
    ap.add_argument("--requests", type=int, default=5000)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--workers", default="1,2", help="comma list: our server is measured with each --workers value")
    ap.add_argument("--baseline-ref", default=BASELINE_REF, help="git commit of the baseline server")
    ap.add_argument("--no-baseline", action="store_true", help="measure the current code only")
    ap.add_argument("--servers", default=None,
                    help="comma list of the servers to run (baseline, base-h11, ours-wN); default: all")
    ap.add_argument("--sequential", type=int, default=500, help="sequential exact look-ups per server")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench_serve_"))
    db = a.db
    if db is None:
        import pyarrow.parquet as pq

        import biointerp.db as vdb
        from biointerp.db.evee import synthetic_evee

        pq.write_table(synthetic_evee(a.rows, n_heads=64, seed=0), work / "evee.parquet")
        db = work / "variants.duckdb"
        vdb.build([work / "evee.parquet"], db, fingerprint=False)
    mixed, exact = make_urls(db, a.requests)
    res: dict = {"baseline_ref": a.baseline_ref, "db": str(db), "clients": a.clients, "requests": a.requests, "cpus": os.cpu_count(),
                 "load_avg_before": os.getloadavg()[0]}
    print(f"bench_serve: {db} ({db.stat().st_size / 1e6:.0f} MB), {a.clients} clients, load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    servers = []
    if not a.no_baseline:
        base_dir = work / "baseline"
        base_dir.mkdir()
        arch = subprocess.run(["git", "-C", str(REPO), "archive", a.baseline_ref, "biointerp"], check=True,
                              capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(base_dir)], input=arch, check=True)
        servers.append(("baseline", str(base_dir), []))
        servers.append(("base-h11", str(base_dir), ["h11"]))
    for w in [int(x) for x in a.workers.split(",") if x.strip()]:
        servers.append((f"ours-w{w}", str(REPO), ["--workers", str(w)]))
    if a.servers:
        keep = set(a.servers.split(","))
        servers = [x for x in servers if x[0] in keep]
    sample = mixed[:300:7] + exact[:20]
    bodies = {}
    for name, pp, ex in servers:
        proc, port = start_server(db, pp, ex, work / f"{name}.log")
        try:
            res[name] = measure(name, proc, port, mixed, exact[: a.sequential], a.clients)
            bodies[name] = [asyncio.run(fetch_once(port, u)) for u in sample]
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    differ = 0
    for name in [n for n in bodies if n.startswith("ours")]:
        for base in [n for n in bodies if not n.startswith("ours")]:
            for u, (s1, b1), (s2, b2) in zip(sample, bodies[base], bodies[name]):
                if s1 != s2 or json.loads(b1) != json.loads(b2):
                    differ += 1
                    print(f"  response differs for {u}: {base} {s1} vs {name} {s2}")
            b, o = res[base], res[name]
            print(f"  {name} vs {base} (ratio = {base} / ours): sequential exact p50 "
                  f"{b['sequential_exact']['p50_ms'] / o['sequential_exact']['p50_ms']:.2f}x; 20 clients p50 "
                  f"{b['concurrent_mixed']['p50_ms'] / o['concurrent_mixed']['p50_ms']:.2f}x, p99 "
                  f"{b['concurrent_mixed']['p99_ms'] / o['concurrent_mixed']['p99_ms']:.2f}x; requests/s "
                  f"{o['concurrent_mixed']['req_per_s'] / b['concurrent_mixed']['req_per_s']:.2f}x more; server CPU per "
                  f"request {b['concurrent_mixed']['server_cpu_ms_per_request'] / o['concurrent_mixed']['server_cpu_ms_per_request']:.2f}x less")
    print(f"  {len(sample)} sampled responses compared per pair; {differ} differ")
    res["responses_differ"] = differ
    if a.json:
        a.json.write_text(json.dumps(res, indent=2))
    if differ or any(res[n]["concurrent_mixed"]["non_200"] for n, *_ in servers):
        sys.exit(1)


if __name__ == "__main__":
    main()
