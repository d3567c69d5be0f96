"""The browser page of ``biointerp db serve``, driven in headless Chromium (Debian's ``chromium``
package through Playwright for Python) against a real server on loopback.

One server and one browser for the module. Every number checked on the page is compared with
the database file read directly with DuckDB (not through the server's code). Screenshots go to
``results/test-artifacts/browser/`` (or ``$BIOINTERP_TEST_ARTIFACTS``).
"""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, quote, urlencode, urlparse

import duckdb
import httpx
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import biointerp.db as vdb
from biointerp.db.evee import synthetic_evee

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("BIOINTERP_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("BIOINTERP_TEST_ARTIFACTS", REPO / "results" / "test-artifacts" / "browser"))

sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed "
                               "(pip install playwright; it is in the dev extra)")
if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
    pytest.skip(f"Chromium not found at {CHROMIUM}: install Debian's package (apt-get install -y chromium) "
                "or set BIOINTERP_CHROMIUM", allow_module_level=True)

POSITIVE = {"pathogenic", "likely_pathogenic"}
NEGATIVE = {"benign", "likely_benign"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    d = tmp_path_factory.mktemp("browser")
    pq.write_table(synthetic_evee(4000, n_heads=6, seed=21), d / "evee.parquet")
    db = d / "variants.duckdb"
    vdb.build([d / "evee.parquet"], db)
    con = duckdb.connect(str(db), read_only=True)
    df = con.execute("SELECT * FROM variants_wide ORDER BY key, ref, alt").fetch_df()
    con.close()
    # an explanations side table (the shape `biointerp features explain` writes) for some variants
    rng = np.random.default_rng(4)
    ex = pd.DataFrame([{"variant_id": v, "rank": r + 1, "latent": int(rng.integers(0, 512)),
                        "delta": float(rng.normal()), "z": float(rng.normal()), "position": int(p + r),
                        "label": ["splice_site", "<b>motif</b>", "exon"][r % 3], "label_score": 0.5, "status": "ok"}
                       for v, p in zip(df.variant_id[::40], df.pos[::40]) for r in range(5)])
    ex.to_parquet(d / "explanations.parquet")
    port = _free_port()
    log = open(d / "server.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "biointerp", "db", "serve", "--db", str(db), "--port", str(port),
                             "--workers", "1", "--explanations", str(d / "explanations.parquet")], stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    base = f"http://127.0.0.1:{port}"
    heads = [c for c in df.columns if c.startswith(("score_", "ref_score_", "var_score_", "gt_"))]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as p:
        # Chromium starts while the server imports (both take seconds on a busy machine)
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        deadline = time.time() + 60
        while True:
            try:
                if httpx.get(base + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                browser.close()
                pytest.fail("server did not start: " + (d / "server.log").read_text()[-2000:])
            time.sleep(0.2)
        yield {"base": base, "df": df, "heads": heads, "browser": browser, "proc": proc, "ex": ex}
        browser.close()
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


@pytest.fixture
def page(site):
    """A fresh page that records server errors, dialogs and script errors."""
    # bypass_csp: Playwright's waits evaluate script text, which the page's CSP forbids; it also makes
    # the hostile-input test stricter (no CSP safety net: the page itself must never run user text).
    ctx = site["browser"].new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    pg = ctx.new_page()
    pg.set_default_timeout(15_000)
    pg.events = {"5xx": [], "dialogs": [], "errors": []}
    pg.on("response", lambda r: pg.events["5xx"].append((r.status, r.url[:120])) if r.status >= 500 else None)
    pg.on("dialog", lambda d: (pg.events["dialogs"].append(d.message), d.dismiss()))
    pg.on("pageerror", lambda e: pg.events["errors"].append(str(e)))
    pg.goto(site["base"] + "/")
    yield pg
    ctx.close()
    assert not pg.events["5xx"], pg.events["5xx"]
    assert not pg.events["dialogs"], pg.events["dialogs"]
    assert not pg.events["errors"], pg.events["errors"]


def _search(pg, text: str) -> None:
    pg.fill("#q", text)
    pg.press("#q", "Enter")


def _list_rows(pg) -> list[dict]:
    pg.wait_for_selector("#list-table[data-ready='1'] #list-body tr")
    return pg.eval_on_selector_all("#list-body tr", """rows => rows.map(tr => {
        const o = {id: tr.getAttribute('data-id')};
        tr.querySelectorAll('td').forEach(td => { o[td.dataset.col] = td.dataset.value ?? td.textContent; });
        return o; })""")


def _labelled_share(df, lo: float, hi: float) -> tuple[int, int]:
    lab = df.label.str.lower()
    m = df.score.notna() & (df.score >= lo) & (df.score <= hi) & (lab.isin(POSITIVE) | lab.isin(NEGATIVE))
    return int(m.sum()), int((m & lab.isin(POSITIVE)).sum())


def test_variant_view_numbers_equal_the_database(site, page):
    df = site["df"]
    row = df.iloc[40 * 3]  # has explanations
    bare = row.chrom.removeprefix("chr")
    _search(page, f"{bare}-{row.pos}-{row.ref}-{row.alt}")  # another accepted id form
    page.wait_for_selector("#variant-fields")
    assert parse_qs(urlparse(page.url).query)["variant"] == [row.variant_id]
    field = {k: page.text_content(f"#variant-fields dd[data-field='{k}']") for k in ("variant_id", "gene", "label",
                                                                                       "consequence", "status")}
    assert field == {"variant_id": row.variant_id, "gene": row.gene, "label": row.label,
                     "consequence": row.consequence, "status": row.status}
    shown = float(page.get_attribute("#variant-fields dd[data-field='score']", "data-value"))
    assert shown == pytest.approx(float(row.score), rel=1e-7)
    assert float(page.text_content("#variant-fields dd[data-field='score']")) == pytest.approx(float(row.score), rel=1e-5)
    heads = dict(page.eval_on_selector_all(
        "#heads-table tr[data-head]", "rs => rs.map(r => [r.dataset.head, r.querySelector('td').dataset.value])"))
    assert set(heads) == set(site["heads"])
    for h in site["heads"]:
        assert float(heads[h]) == pytest.approx(float(row[h]), rel=1e-6), h
    # calibration reading: share of pathogenic among labelled rows in the shown score bin, recounted here
    n = int(page.get_attribute("#reading [data-n]", "data-n"))
    share = float(page.get_attribute("#reading-share", "data-share"))
    cal = httpx.get(site["base"] + "/api/calibration").json()
    b = next(b for b in cal["bins"] if b["lo"] <= row.score <= b["hi"])
    n_exp, k_exp = _labelled_share(df, b["lo"], b["hi"])
    assert (n, share) == (n_exp, pytest.approx(k_exp / n_exp))
    assert sum(x["n"] for x in cal["bins"]) == int(df.label.str.lower().isin(POSITIVE | NEGATIVE).sum())
    # the top explanation features, as in the side table, in rank order (labels shown as text)
    ex = site["ex"][site["ex"].variant_id == row.variant_id].sort_values("rank")
    got = page.eval_on_selector_all("#explanations-table tbody tr", """rs => rs.map(r => [r.dataset.latent,
        r.children[2].textContent, r.children[3].dataset.value])""")
    assert [(int(a), b, float(c)) for a, b, c in got] == list(zip(ex.latent, ex.label, ex.delta))
    assert page.locator("#explanations-table b").count() == 0
    page.screenshot(path=str(ARTIFACTS / "variant.png"), full_page=True)
    # the URL is the state: opening it in a fresh page shows the same variant
    p2 = page.context.new_page()
    p2.goto(page.url)
    p2.wait_for_selector("#variant-fields")
    assert p2.text_content("#variant-title") == f"Variant {row.variant_id}"
    p2.close()


def test_gene_list_sorted_paged_on_the_server(site, page):
    df = site["df"]
    gene = df.gene.value_counts().index[3]
    g = df[df.gene == gene]
    t = time.perf_counter()
    _search(page, gene.lower())  # gene symbols match case-insensitively
    rows = _list_rows(page)
    first_results_ms = (time.perf_counter() - t) * 1000
    print(f"\ntime to first results (gene {gene}, {len(df)} rows): {first_results_ms:.0f} ms")
    assert page.text_content("#list-title") == f"Gene {gene}"
    assert f"{len(g):,} variants" in page.text_content("#list-summary")
    assert [r["id"] for r in rows] == g.variant_id.tolist()[:50]
    # the plot: one point per scored variant, coloured by label
    page.wait_for_selector("#plot svg circle[data-id]")
    pts = page.eval_on_selector_all("#plot circle[data-id]", "cs => cs.map(c => [c.dataset.id, c.getAttribute('class')])")
    assert len(pts) == int(g.score.notna().sum())
    want = {v: ("pt-pathogenic" if lab in POSITIVE else "pt-benign" if lab in NEGATIVE else "pt-other")
            for v, lab in zip(g.variant_id, g.label.str.lower())}
    assert all(want[v] == c for v, c in pts)
    page.screenshot(path=str(ARTIFACTS / "gene.png"), full_page=True)
    # sort by score (highest first) on the server, then the next page by keyboard
    page.click("th button[data-sort='score']")
    page.wait_for_function("document.querySelector('th[aria-sort=descending] button[data-sort=score]')")
    rows = _list_rows(page)
    top = g.sort_values(["score", "key"], ascending=[False, True], na_position="last")
    assert [r["id"] for r in rows] == top.variant_id.tolist()[:50]
    assert [float(r["score"]) for r in rows] == pytest.approx(top.score.tolist()[:50], rel=1e-6)
    page.locator("body").press("n")
    page.wait_for_function("new URLSearchParams(location.search).get('page') === '2'")
    page.wait_for_function(f"document.querySelector('#list-body tr').dataset.id === '{top.variant_id.iloc[50]}'")
    rows = _list_rows(page)
    assert [r["id"] for r in rows] == top.variant_id.tolist()[50:100]
    q = parse_qs(urlparse(page.url).query)
    assert q["sort"] == ["score"] and q["order"] == ["desc"] and q["page"] == ["2"]
    # shareable: the same URL in a fresh page lists the same rows
    p2 = page.context.new_page()
    p2.goto(page.url)
    assert [r["id"] for r in _list_rows(p2)] == top.variant_id.tolist()[50:100]
    p2.close()
    # keyboard: focus the first row, move down, Enter opens that variant; Escape comes back
    page.locator("#list-body tr").first.focus()
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")
    page.wait_for_selector("#variant-fields")
    assert page.text_content("#variant-fields dd[data-field='variant_id']") == top.variant_id.iloc[51]
    page.keyboard.press("Escape")
    page.wait_for_selector("#list-view:not([hidden])")
    assert parse_qs(urlparse(page.url).query)["page"] == ["2"]


def test_region_and_rsid(site, page):
    df = site["df"]
    chrom = "chr2"
    c = df[df.chrom == chrom]
    lo, hi = int(c.pos.iloc[10]), int(c.pos.iloc[10]) + 3_000_000
    exp = c[(c.pos >= lo) & (c.pos <= hi)]
    _search(page, f"{chrom}:{lo:,}-{hi:,}")
    rows = _list_rows(page)
    assert page.text_content("#list-title") == f"Region {chrom}:{lo}-{hi}"
    assert f"{len(exp):,} variants" in page.text_content("#list-summary")
    assert [r["id"] for r in rows] == exp.variant_id.tolist()[:50]
    page.wait_for_selector("#plot svg circle[data-id]")
    assert page.locator("#plot circle[data-id]").count() == int(exp.score.notna().sum())
    page.screenshot(path=str(ARTIFACTS / "region.png"), full_page=True)
    # an rsID carried by one variant opens that variant
    rs = df.rsid.dropna()
    rs = rs[~rs.duplicated(keep=False)].iloc[5]
    _search(page, rs)
    page.wait_for_selector("#variant-fields")
    assert page.text_content("#variant-fields dd[data-field='rsid']") == rs
    # a region without variants and an unknown gene: a message, no 5xx (the page fixture checks)
    first = int(c.pos.iloc[0])
    _search(page, f"{chrom}:1-{first - 1}")
    page.wait_for_function(f"document.getElementById('status').textContent.includes('{chrom}:1-{first - 1}')")
    page.wait_for_function("!document.getElementById('plot-caption').textContent.startsWith('Loading')")
    _search(page, "NOSUCHGENE")
    page.wait_for_function("document.getElementById('status').textContent.includes('NOSUCHGENE')")


HOSTILE = [
    "<script>window.__pwned = 1</script>",
    '"><img src=x onerror="window.__pwned=1">',
    "<svg onload=window.__pwned=1>",
    "' OR 1=1; DROP TABLE variants; --",
    "chr1:1-10; DROP TABLE variants",
    "GENE1\" onmouseover=\"window.__pwned=1",
    "javascript:window.__pwned=1",
    "chr1:99999999999999999999:A:C",
    "🧬" * 50,
    "A" * 100_000,
]


def test_hostile_search_text_is_shown_as_text(site, page):
    for text in HOSTILE:
        page.evaluate("document.getElementById('status').textContent = ''")
        _search(page, text)
        page.wait_for_function("document.getElementById('status').textContent.length > 0 && "
                               "!document.getElementById('status').textContent.startsWith('Searching')")
        status = page.text_content("#status")
        assert text.strip()[:40] in status, (text[:40], status[:200])
        assert page.evaluate("window.__pwned") is None
        assert page.locator("#main img, #main script, #status *").count() == 0
    page.screenshot(path=str(ARTIFACTS / "hostile.png"), full_page=False)
    # the same texts as shared links (state from the URL) and straight to the API: 4xx or 200, never 5xx
    for text in HOSTILE[:3]:
        page.goto(site["base"] + "/?" + httpx.QueryParams({"q": text}).__str__())
        page.wait_for_function("document.getElementById('status').textContent.length > 0 && "
                               "!document.getElementById('status').textContent.startsWith('Searching')")
        assert page.evaluate("window.__pwned") is None
    host, port = urlparse(site["base"]).netloc.split(":")
    for text in HOSTILE:  # http.client: httpx refuses URLs over 64 kB, the server must not care
        for url in [f"{path}?{urlencode({'q': text})}" for path in ("/api/search", "/api/points", "/search")] + [
                "/api/variant/" + quote(text, safe="")]:
            conn = http.client.HTTPConnection(host, int(port), timeout=10)
            conn.request("GET", url)
            r = conn.getresponse()
            body = r.read()
            conn.close()
            # 200 (nothing found) or 4xx; a 100 kB URL is refused by the HTTP layer itself (400)
            assert r.status == 200 or 400 <= r.status < 500, (url[:80], r.status, body[:200])
    with httpx.Client(base_url=site["base"], timeout=10) as c:
        page_html = c.get("/")
        assert "script-src 'self'" in page_html.headers["content-security-policy"]
        assert c.get("/static/..%2f..%2fserve.py").status_code == 404
        assert c.get("/health").json()["status"] == "ok"
    assert site["proc"].poll() is None


def _luminance(rgb: str) -> float:
    vals = [int(x) / 255 for x in rgb[rgb.index("(") + 1: rgb.index(")")].split(",")[:3]]
    lin = [v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4 for v in vals]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def test_labels_and_contrast(site, page):
    """Every form control has a label; text colours reach WCAG AA (4.5:1) on their backgrounds."""
    _search(page, site["df"].gene.iloc[0])
    _list_rows(page)
    unlabelled = page.evaluate("""() => [...document.querySelectorAll('input, select, button')].filter(e =>
        !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.textContent.trim()).map(e => e.id)""")
    assert unlabelled == []
    pairs = page.evaluate("""() => {
        const bg = e => { for (; e; e = e.parentElement) { const c = getComputedStyle(e).backgroundColor;
            if (c !== 'rgba(0, 0, 0, 0)' && c !== 'transparent') return c; } return 'rgb(255, 255, 255)'; };
        const sel = ['body', '#search-help', 'label[for=q]', '#list-summary', 'th', 'td[data-col=variant_id] a',
                     'td.label-pathogenic', 'td.label-benign', 'td[data-col=score]', '#page-info', 'button[type=submit]'];
        return sel.map(s => { const e = document.querySelector(s); return e ? [s, getComputedStyle(e).color, bg(e)] : [s, null, null]; });
    }""")
    for sel, fg, bg in pairs:
        if fg is None:
            continue
        hi, lo = sorted([_luminance(fg), _luminance(bg)], reverse=True)
        ratio = (hi + 0.05) / (lo + 0.05)
        assert ratio >= 4.5, (sel, fg, bg, round(ratio, 2))
