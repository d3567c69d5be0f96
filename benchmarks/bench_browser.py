"""Time to first results in the browser page for gene queries on a large variant database.

Starts ``biointerp db serve`` on loopback over ``--db`` (e.g. the 4.25M-row database of
bench_db.py), opens the page in headless Chromium (Debian's package, Playwright for Python),
and for each of ``--genes`` random genes types the symbol into the search box and times
Enter -> first table row painted, then -> plot drawn. The page never loads the database: one
``/api/search`` (a page of rows) and one ``/api/points`` request per gene. Reported: p50/p90/max
ms, and the same gene's ``/api/search`` time measured on the server alone (the baseline: the
page's own overhead is the difference). Exits non-zero when a page's row count differs from the
database's.

    python benchmarks/bench_browser.py --db /path/variants.duckdb --genes 30
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import httpx
import numpy as np


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", type=Path, required=True)
    ap.add_argument("--genes", type=int, default=30)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--chromium", default=os.environ.get("BIOINTERP_CHROMIUM", "/usr/bin/chromium"))
    ap.add_argument("--screenshot", type=Path, default=None, help="save a screenshot of the last gene here")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    from playwright.sync_api import sync_playwright

    con = duckdb.connect(str(a.db), read_only=True)
    n_rows = con.execute("SELECT count(*) FROM variants").fetchone()[0]
    genes = con.execute(
        "SELECT gene, n FROM (SELECT gene, sum(n_variants) AS n FROM genes GROUP BY gene) "
        "USING SAMPLE reservoir(%d ROWS) REPEATABLE (5)" % int(a.genes)).fetchall()
    con.close()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = open(a.db.with_name("bench_browser_server.log"), "wb")
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "biointerp", "db", "serve", "--db", str(a.db), "--port", str(port),
                             "--workers", str(a.workers)], stdout=log, stderr=subprocess.STDOUT)
    try:
        while True:
            try:
                if httpx.get(base + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None:
                raise SystemExit("server did not start")
            time.sleep(0.2)
        start_s = time.perf_counter() - t
        print(f"bench_browser: {a.db} ({n_rows:,} rows, {a.db.stat().st_size / 1e6:.0f} MB); server up in "
              f"{start_s:.1f}s; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        first, plot, api, bad = [], [], [], 0
        with sync_playwright() as p, httpx.Client(base_url=base, timeout=30) as c:
            browser = p.chromium.launch(executable_path=a.chromium, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1280, "height": 900}, bypass_csp=True)
            page.goto(base + "/")
            page.wait_for_load_state("networkidle")
            for gene, n in genes:
                page.evaluate("document.getElementById('list-table').removeAttribute('data-ready');"
                              "document.getElementById('plot').replaceChildren()")
                page.fill("#q", gene)
                t0 = time.perf_counter()
                page.press("#q", "Enter")
                page.wait_for_selector("#list-table[data-ready='1'] #list-body tr")
                first.append(time.perf_counter() - t0)
                page.wait_for_selector("#plot svg")
                plot.append(time.perf_counter() - t0)
                summary = page.text_content("#list-summary")
                if not summary.startswith(f"{n:,} variants"):
                    bad += 1
                    print(f"  {gene}: page says {summary!r}, database has {n}")
                t1 = time.perf_counter()
                c.get("/api/search", params={"q": gene}).raise_for_status()
                api.append(time.perf_counter() - t1)
            if a.screenshot:
                page.screenshot(path=str(a.screenshot), full_page=True)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
    ms = lambda xs: {k: float(v) for k, v in zip(("p50", "p90", "max"), np.percentile(np.asarray(xs) * 1000, [50, 90, 100]))}
    res = {"rows": n_rows, "genes": len(genes), "first_results_ms": ms(first), "plot_ms": ms(plot),
           "api_search_ms": ms(api), "server_start_s": start_s, "load_avg": os.getloadavg()[0]}
    f, pl, ap_ = res["first_results_ms"], res["plot_ms"], res["api_search_ms"]
    print(f"  time to first results (Enter -> first row painted): p50 {f['p50']:.0f} ms, p90 {f['p90']:.0f} ms, "
          f"max {f['max']:.0f} ms over {len(genes)} genes")
    print(f"  -> plot drawn: p50 {pl['p50']:.0f} ms, p90 {pl['p90']:.0f} ms")
    print(f"  baseline: the same /api/search request alone: p50 {ap_['p50']:.1f} ms "
          f"(page overhead p50 {f['p50'] - ap_['p50']:.0f} ms)")
    if a.json:
        a.json.write_text(json.dumps(res, indent=2))
    if bad:
        sys.exit(1)


if __name__ == "__main__":
    main()
