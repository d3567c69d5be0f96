"""Benchmark the variant database against (a) tabix on the exported TSV and (b) DuckDB on raw Parquet shards.

Builds an EVEE-like synthetic database (default 4.25M rows, pathogenicity + 64
``score_*`` heads + ref/var/gt views), then reports build time, file size,
p50/p99 latency of exact look-up, 100 kb region and gene top-50 for all three
ways, their ratios, and annotate throughput on a 1M-record VCF.

    .venv/bin/python benchmarks/bench_db.py              # full size
    .venv/bin/python benchmarks/bench_db.py --quick      # 200k rows, 100k VCF records

Annotation (``--annotate``: only this part): ``biointerp db annotate`` of the sorted 1M-record VCF
(~70% database variants, 2% multi-allelic) against the same function from named baseline commits
(``--annotate-baseline``, repeatable; default ``e0bb00a``, main before issue #15's annotate work, and
``b5ec7b8``, main before the single-join rewrite; loaded from git), in the same process on the same
files, alternating for ``--annotate-repeat`` rounds. Reported: records/s end to end (best and
median), process CPU and wall seconds, the ratios, and whether the outputs are byte-identical
(decompressed and compressed); the script exits non-zero when they differ.

    .venv/bin/python benchmarks/bench_db.py --annotate --workdir /tmp/bdb --keep   # builds once, then reuses

Wide releases (EVEE width, ``--wide``): writes an EVEE-shaped synthetic release (5 chromosome-balanced
shards, manifest.json, heads.feather; ``--heads 4906`` columns), indexes it with the wide layout
with both head stores (``inplace``: heads read from the shards; ``packed``: re-encoded once), and
reports time to a queryable database, extra disk vs the release, peak memory and p50/p99 of exact
look-up / gene top-50 / 100 kb region with all heads and with 64 heads, against a plain DuckDB
scan of the same shards (same rows and values required, else exit 1). ``--extrapolate a.json
b.json`` fits the scaling of two runs and projects it to 4.25M rows.

    .venv/bin/python benchmarks/bench_db.py --wide --rows 50000 --heads 4906 --json w50k.json
    .venv/bin/python benchmarks/bench_db.py --extrapolate w50k.json w500k.json --markdown table.md

Resumable for 15-minute slots: with ``--workdir W --json R --reuse`` every finished step (release,
each build, each store's queries, the identity check) is in R as soon as it is measured and is
skipped on the next call; ``--build-only`` stops after the builds. Build, queries and the plain
scan each run in a child process (its own peak memory is reported); the plain scan runs with
DuckDB ``memory_limit = 2GB``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow.parquet as pq
import pysam

import biointerp.db as vdb
from biointerp.db.evee import synthetic_evee


def pct(ts: list[float]) -> tuple[float, float]:
    a = np.asarray(ts) * 1000
    return float(np.median(a)), float(np.percentile(a, 99))


def timed(fn, args_list) -> tuple[list[float], list]:
    ts, outs = [], []
    for a in args_list:
        t = time.perf_counter()
        outs.append(fn(*a))
        ts.append(time.perf_counter() - t)
    return ts, outs


def write_vcf(path: Path, con: duckdb.DuckDBPyConnection, n: int, seed: int) -> None:
    """A sorted n-record VCF: ~70% database variants, the rest novel alleles/positions, 2% multi-allelic."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    allv = con.execute("SELECT chrom, pos, ref, alt, key // 4294967296 AS rank FROM variants").fetch_df()
    k = min(int(n * 0.7), len(allv))
    known = allv.iloc[np.sort(rng.choice(len(allv), size=k, replace=False))]
    novel = known.sample(n=n - k, replace=True, random_state=seed).copy()
    novel["pos"] = novel["pos"] + rng.integers(1, 50, len(novel))
    df = pd.concat([known, novel], ignore_index=True).sort_values(["rank", "pos"], kind="stable")
    multi = rng.random(len(df)) < 0.02
    other = {"A": "C", "C": "G", "G": "T", "T": "A"}
    df = df.reset_index(drop=True)
    df.loc[multi, "alt"] = df.loc[multi, "alt"] + "," + df.loc[multi, "ref"].map(lambda r: other.get(r, "A"))
    df["chrom"] = df["chrom"].str.replace("chr", "", regex=False)
    body = (df["chrom"] + "\t" + df["pos"].astype(str) + "\t.\t" + df["ref"] + "\t" + df["alt"]
            + "\t50\tPASS\tDP=" + pd.Series(rng.integers(1, 99, len(df)), index=df.index).astype(str))
    head = ["##fileformat=VCFv4.2", '##INFO=<ID=DP,Number=1,Type=Integer,Description="depth">',
            *[f"##contig=<ID={c}>" for c in df["chrom"].unique()], "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO"]
    with pysam.BGZFile(str(path), "wb") as fh:
        fh.write(("\n".join(head) + "\n" + "\n".join(body.tolist()) + "\n").encode())


#: e0bb00a: main before issue #15's annotate work (328k records/s in the issue); b5ec7b8: main before
#: the single-join rewrite (INFO splice already in)
ANNOTATE_BASELINES = ("e0bb00a", "b5ec7b8")


def load_baseline_annotate(ref: str):
    """The VCF annotator as it was at git ``ref`` (``biointerp/db/annotation.py``, before that
    ``annotate.py``), as a module (imports today's package)."""
    import importlib.util
    import subprocess

    repo = Path(__file__).resolve().parents[1]
    for name in ("annotation", "annotate"):
        got = subprocess.run(["git", "-C", str(repo), "show", f"{ref}:biointerp/db/{name}.py"], capture_output=True,
                             text=True)
        if got.returncode == 0:
            break
    else:
        raise SystemExit(f"no VCF annotator at {ref}: {got.stderr.strip()}")
    src = got.stdout
    path = Path(tempfile.mkdtemp(prefix="bench_annotate_")) / f"annotate_{ref}.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location(f"annotate_{ref}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def annotate_vs_baseline(db, vcf: Path, work: Path, refs=ANNOTATE_BASELINES, repeat: int = 3,
                         heads: list[str] | None = None) -> dict:
    """Ours vs each baseline commit's ``annotate_vcf``, alternating on the same files (see the module doc)."""
    import gzip
    import hashlib

    heads = heads or []
    runs = {f"base {r}": (load_baseline_annotate(r).annotate_vcf, work / f"annotated-{r}.vcf.gz") for r in refs}
    runs["ours"] = (vdb.annotate, work / "annotated-ours.vcf.gz")
    res: dict = {"baselines": list(refs), "load_avg_before": os.getloadavg()[0], "cpus": os.cpu_count(),
                 "heads": heads}
    for fn, out in runs.values():  # warm-up: page cache, imports
        fn(db, vcf, out, heads=heads)
    for name in runs:
        res[name] = {"records_per_s": [], "cpu_s": [], "wall_s": [], "steps": []}
    for _ in range(repeat):
        for name, (fn, out) in runs.items():
            c, w = time.process_time(), time.perf_counter()
            s = fn(db, vcf, out, heads=heads)
            res[name]["cpu_s"].append(time.process_time() - c)
            res[name]["wall_s"].append(time.perf_counter() - w)
            res[name]["records_per_s"].append(s["records_per_s"])
            res[name]["steps"].append(s["seconds_by_step"])
            res[name]["records"] = s["records"]
            res[name]["summary"] = {k: v for k, v in s.items() if k not in ("seconds_by_step", "output")}
    digests = {n: hashlib.sha256(gzip.open(o).read()).hexdigest() for n, (_f, o) in runs.items()}
    counts = {n: {k: v for k, v in res[n]["summary"].items() if k not in ("seconds", "records_per_s")} for n in runs}
    res["identical_text"] = all(d == digests["ours"] for d in digests.values())
    res["identical_bgzf"] = all(o.read_bytes() == runs["ours"][1].read_bytes() for _f, o in runs.values())
    # same counts (records, annotated, matched alleles...) where both report them, timings aside
    res["identical_summary"] = all(counts[n][k] == counts["ours"][k] for n in runs for k in counts[n]
                                   if k in counts["ours"])
    res["load_avg_after"] = os.getloadavg()[0]
    print(f"  annotate{' + ' + ','.join(heads) if heads else ''}, ours vs {', '.join(refs)} (alternating, {repeat} "
          f"rounds; load average {res['load_avg_before']:.1f} before, {res['load_avg_after']:.1f} after, "
          f"{os.cpu_count()} CPUs):")
    for name in runs:
        r = res[name]
        print(f"    {name:12s} {r['records']:,} records: best {max(r['records_per_s']):>9,.0f} records/s, median "
              f"{np.median(r['records_per_s']):>9,.0f} (all {[round(x / 1e3) for x in r['records_per_s']]}k); "
              f"process CPU median {np.median(r['cpu_s']):.2f} s, wall median {np.median(r['wall_s']):.2f} s; "
              f"steps (last run) {r['steps'][-1]}")
    for ref in refs:
        b = res[f"base {ref}"]
        res[f"ratio_best_{ref}"] = max(res["ours"]["records_per_s"]) / max(b["records_per_s"])
        res[f"ratio_median_{ref}"] = float(np.median(res["ours"]["records_per_s"]) / np.median(b["records_per_s"]))
        print(f"    ours / {ref}: {res[f'ratio_best_{ref}']:.2f}x records/s (best), "
              f"{res[f'ratio_median_{ref}']:.2f}x (median); CPU {np.median(b['cpu_s']) / np.median(res['ours']['cpu_s']):.2f}x less")
    print(f"    output text identical: {res['identical_text']} (sha256 {digests['ours'][:16]}), compressed bytes "
          f"identical: {res['identical_bgzf']}, same counts: {res['identical_summary']}")
    return res


def annotate_stages(db, vcf: Path, work: Path, batch_bytes: int = 1 << 23, show: bool = True) -> dict:
    """Where the annotate floor is: process CPU seconds of each stage of ours, run one stage at a
    time over the whole VCF (no overlap), on the same code path as ``biointerp db annotate``."""
    import duckdb
    import pysam

    from biointerp.db import annotation as A

    def cpu(fn):
        c = time.process_time()
        out = fn()
        return time.process_time() - c, out

    meta, cols, _n, n_bytes = A._read_header(vcf)
    names = [f"c{i}" for i in range(len(cols))]
    fields = [("SCORE", "score", "Float", ""), ("LABEL", "label", "String", "")]
    stats = dict.fromkeys(("records", "alleles", "annotated_records", "matched_alleles", "known_contig"), 0)
    steps = dict.fromkeys(("read_parse", "join", "format", "assemble", "compress_write"), 0.0)
    con = duckdb.connect()
    con.execute(f"ATTACH '{db.path}' AS vdb (READ_ONLY)")
    res = {}

    def inflate():
        with A._open_stream(vcf) as stream:
            stream.read(n_bytes)
            return list(A._blocks(stream, batch_bytes))

    res["inflate gzip input, cut blocks"], blocks = cpu(inflate)
    res["Arrow CSV parse"], tables = cpu(lambda: [A._parse_block(b, names) for b in blocks])
    res["allele keys (split, trim, upper)"], _ = cpu(lambda: [A._alleles(t, db, dict(stats)) for t in tables])
    t_batch, adds = cpu(lambda: [A._annotate_batch(con, db, t, names, fields, "BI_", stats, steps) for t in tables])
    res["DuckDB join + INFO text"] = t_batch - res["allele keys (split, trim, upper)"]
    res["splice INFO into the input bytes"], bodies = cpu(
        lambda: [A._body(b, t, names, d, steps) for b, t, d in zip(blocks, tables, adds)])

    def deflate():
        with pysam.BGZFile(str(work / "stages.vcf.gz"), "wb1") as fh:
            for body in bodies:
                fh.write(body)

    res["BGZF deflate (level 1)"], _ = cpu(deflate)
    total = sum(res.values())
    n = stats["records"]
    if not show:
        con.close()
        return {"records": n, "cpu_s": res, "total_cpu_s": total}
    print(f"  annotate stages, ours, one at a time ({n:,} records; process CPU, all threads; load average "
          f"{os.getloadavg()[0]:.1f}):")
    for k, v in res.items():
        print(f"    {k:36s} {v:6.2f} s  {100 * v / total:4.0f}%")
    print(f"    {'total':36s} {total:6.2f} s  = {n / total:,.0f} records per CPU-second")
    con.close()
    return {"records": n, "cpu_s": res, "total_cpu_s": total}


def annotate_only(a) -> None:
    """``--annotate``: build (or reuse) the database and VCF in the work dir, then compare."""
    work = a.workdir or Path(tempfile.mkdtemp(prefix="bench_db_"))
    work.mkdir(parents=True, exist_ok=True)
    db_path, vcf = work / "variants.duckdb", work / "input.vcf.gz"
    print(f"bench_db --annotate: {a.rows:,} rows x {a.heads} heads, {a.vcf_records:,}-record VCF, work dir {work}")
    if not db_path.exists():
        t = time.perf_counter()
        pq.write_table(synthetic_evee(a.rows, n_heads=a.heads, seed=0), work / "evee.parquet")
        vdb.build([work / "evee.parquet"], db_path, overwrite=True, fingerprint=False)
        (work / "evee.parquet").unlink()
        print(f"  built the database in {time.perf_counter() - t:.0f}s")
    db = vdb.open(db_path)
    if not vcf.exists():
        write_vcf(vcf, db._con.cursor(), a.vcf_records, seed=3)
    res = {"rows": db.metadata["n_rows"], "annotate": annotate_vs_baseline(db, vcf, work, a.annotate_baseline,
                                                                           a.annotate_repeat)}
    annotate_stages(db, vcf, work, show=False)  # a warm-up pass (thread pools, first-use imports), not reported
    res["annotate_stages"] = annotate_stages(db, vcf, work)
    res["annotate_2_heads"] = annotate_vs_baseline(db, vcf, work, a.annotate_baseline, max(1, a.annotate_repeat // 2),
                                                   heads=["score_0", "score_1"])
    db.close()
    if a.json:
        a.json.write_text(json.dumps(res, indent=2, default=str))
    if not a.keep and a.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    bad = [k for k in ("annotate", "annotate_2_heads") if not (res[k]["identical_text"] and res[k]["identical_summary"])]
    if bad:
        raise SystemExit(f"annotate outputs differ from the baseline's: {bad}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=4_250_000)
    ap.add_argument("--heads", type=int, default=64)
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--vcf-records", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=300, help="queries per kind for our DB and tabix")
    ap.add_argument("--baseline-queries", type=int, default=15, help="queries per kind for raw-Parquet DuckDB")
    ap.add_argument("--tsv-heads", type=int, default=8, help="head columns carried by the tabix TSV (-1: all)")
    ap.add_argument("--quick", action="store_true", help="200k rows, 100k VCF records")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    ap.add_argument("--reuse", action="store_true",
                    help="reuse shards, database and TSV already in --workdir (measure queries/annotate only)")
    ap.add_argument("--json", type=Path, default=None, help="also write results as JSON")
    ap.add_argument("--wide", action="store_true", help="EVEE-width release, wide layout (see above)")
    ap.add_argument("--row-group-size", type=int, default=65_536, help="--wide: rows per Parquet row group")
    ap.add_argument("--stores", default="inplace,packed", help="--wide: head stores to measure")
    ap.add_argument("--extrapolate", nargs=2, type=Path, default=None, metavar=("SMALL.json", "LARGE.json"),
                    help="project two --wide runs to --target-rows")
    ap.add_argument("--target-rows", type=int, default=4_250_000)
    ap.add_argument("--markdown", type=Path, default=None, help="--extrapolate: also write the table here")
    ap.add_argument("--build-only", action="store_true", help="--wide: stop after the builds (resume later with --reuse)")
    ap.add_argument("--annotate", action="store_true", help="only the annotate comparison (see above)")
    ap.add_argument("--annotate-baseline", action="append", default=None,
                    help=f"git commit of an annotate baseline (repeatable; default {' and '.join(ANNOTATE_BASELINES)})")
    ap.add_argument("--annotate-repeat", type=int, default=3, help="alternating rounds of the annotate comparison")
    a = ap.parse_args()
    if a.extrapolate:
        return extrapolate(a.extrapolate, a.target_rows, a.markdown)
    if a.wide:
        return main_wide(a)
    if a.quick:
        a.rows, a.vcf_records, a.queries = 200_000, 100_000, 100
    a.annotate_baseline = tuple(a.annotate_baseline or ANNOTATE_BASELINES)
    if a.annotate:
        return annotate_only(a)
    work = a.workdir or Path(tempfile.mkdtemp(prefix="bench_db_"))
    work.mkdir(parents=True, exist_ok=True)
    res: dict = {"rows": a.rows, "heads": a.heads, "cpus": os.cpu_count()}
    print(f"bench_db: {a.rows:,} rows x ({a.heads} score_ heads + 6 view columns), work dir {work}")

    shards = work / "shards"
    db_path = work / "variants.duckdb"
    tsv = work / "variants.tsv.gz"
    if a.reuse and db_path.exists() and tsv.exists() and shards.exists():
        print(f"  reusing {db_path} ({db_path.stat().st_size / 1e6:.0f} MB), {tsv} and {shards}")
    else:
        t = time.perf_counter()
        table = synthetic_evee(a.rows, n_heads=a.heads, seed=0)
        shards.mkdir(exist_ok=True)
        step = -(-a.rows // a.shards)
        for i in range(a.shards):
            pq.write_table(table.slice(i * step, step), shards / f"part-{i:05d}.parquet")
        print(f"  generated + wrote {a.shards} EVEE-schema shards in {time.perf_counter() - t:.1f}s")
        del table
        t = time.perf_counter()
        vdb.build([shards], db_path, overwrite=True, fingerprint=True)
        res["build_s"] = time.perf_counter() - t
        res["db_mb"] = db_path.stat().st_size / 1e6
        res["parquet_mb"] = sum(p.stat().st_size for p in shards.iterdir()) / 1e6
        print(f"  build: {res['build_s']:.1f}s, DB file {res['db_mb']:.0f} MB (input Parquet {res['parquet_mb']:.0f} MB)")
        t = time.perf_counter()
        th = None if a.tsv_heads < 0 else [f"score_{j}" for j in range(a.tsv_heads)]
        tsv = vdb.export_tsv(db_path, tsv, heads=th, overwrite=True)
        res["export_tsv_s"] = time.perf_counter() - t
        res["tsv_mb"] = tsv.stat().st_size / 1e6
        print(f"  TSV export + bgzip + tabix: {res['export_tsv_s']:.1f}s, {res['tsv_mb']:.0f} MB "
              f"({'all' if th is None else len(th)} heads in the TSV; our look-ups return all {a.heads + 6})")

    db = vdb.open(db_path)
    rng = np.random.default_rng(1)
    n_q = a.queries
    sample = db._run(f"SELECT variant_id0, chrom, pos, ref, alt, gene FROM variants USING SAMPLE reservoir({max(n_q, 10)} ROWS) "
                     "REPEATABLE (7)", []).rows
    genes = [r[5] for r in sample]
    exact = [(r[0],) for r in sample]
    regions = [(f"{r[1]}:{max(1, r[2] - 50_000)}-{max(1, r[2] - 50_000) + 99_999}",) for r in sample]
    rng.shuffle(regions)

    # warm-up
    for f, args in ((lambda v: db.lookup(v, zero_based=True), exact[:5]), (db.region, regions[:5])):
        timed(f, args)
    def run_ours():
        return {
            "exact": timed(lambda v: db.lookup(v, zero_based=True), exact),
            "region_100kb": timed(lambda r: db.region(r), regions),
            "gene_top50": timed(lambda g: db.gene(g, top=50), [(g,) for g in genes]),
        }

    print(f"  load average before the query runs: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    # first pass: cold (blocks read from the file); second pass: warm buffer pool, as in a running server
    cold = run_ours()
    ours = run_ours()
    res["cold_p50_ms"] = {k: pct(v[0])[0] for k, v in cold.items()}
    print("  our first (cold) pass p50 ms: " + ", ".join(f"{k} {v:.2f}" for k, v in res["cold_p50_ms"].items())
          + "; the table below is the second (warm) pass")
    assert all(len(o.rows) == 1 for o in ours["exact"][1]), "exact look-ups must each find their variant"

    # layout ablation: the same exact look-ups (same columns, one thread, warm) with ART index scans
    # disabled, i.e. only zone maps on the sorted key prune row groups
    cols = db._cols(True)
    keys = [db._key(db.resolve_contig(r[1]), r[2]) for r in sample]
    abl = duckdb.connect(str(db_path), read_only=True)
    abl.execute("SET enable_progress_bar = false")
    abl.execute("SET threads = 1")
    art_c, zm_c = abl.cursor(), abl.cursor()
    zm_c.execute("SET index_scan_max_count = 0")
    zm_c.execute("SET index_scan_percentage = 0")
    lat = {"art": [], "zonemap": []}
    for _ in range(2):
        for k in keys:
            for name, c in (("art", art_c), ("zonemap", zm_c)):
                t = time.perf_counter()
                c.execute(f"SELECT {cols} FROM variants WHERE key = ?", [k]).fetchall()
                lat[name].append(time.perf_counter() - t)
    abl.close()
    res["exact_layout"] = {"art_p50_ms": pct(lat["art"])[0], "zonemap_only_p50_ms": pct(lat["zonemap"])[0]}
    print(f"  exact look-up by key: ART index p50 {pct(lat['art'])[0]:.2f} ms vs zone maps only "
          f"p50 {pct(lat['zonemap'])[0]:.2f} ms")

    tbx = pysam.TabixFile(str(tsv))
    hdr = tbx.header[-1].split("\t")
    i_gene, i_score = hdr.index("gene"), hdr.index("score")
    spans = {g: db._run("SELECT chrom, min(start), max(\"end\") FROM genes WHERE gene = ? GROUP BY chrom", [g]).rows[0]
             for g in set(genes)}

    def tabix_exact(v):
        c, p, r, al = v.split(":")
        p = int(p) + 1
        return [x for x in (ln.split("\t") for ln in tbx.fetch(c, p - 1, p)) if x[2] == r and x[3] == al]

    def tabix_region(reg):
        c, se = reg.split(":")
        s, e = map(int, se.split("-"))
        return [ln.split("\t") for ln in tbx.fetch(c, s - 1, e)]

    def tabix_gene(g):
        c, s, e = spans[g]
        rows = [x for x in (ln.split("\t") for ln in tbx.fetch(c, s - 1, e)) if x[i_gene] == g]
        return sorted(rows, key=lambda x: -float(x[i_score]) if x[i_score] != "." else np.inf)[:50]

    for f, args in ((tabix_exact, exact), (tabix_region, regions)):
        timed(f, args)  # same warm-up as ours
    tabix = {
        "exact": timed(tabix_exact, exact),
        "region_100kb": timed(tabix_region, regions),
        "gene_top50": timed(tabix_gene, [(g,) for g in genes]),
    }
    assert all(len(o) == 1 for o in tabix["exact"][1])

    raw = duckdb.connect()
    raw.execute("SET enable_progress_bar = false")
    src = f"read_parquet('{shards}/*.parquet')"
    nb = a.baseline_queries

    def raw_exact(v):
        return raw.execute(f"SELECT * FROM {src} WHERE variant_id = ?", [v]).fetchall()

    def raw_region(reg):
        c, se = reg.split(":")
        s, e = map(int, se.split("-"))
        return raw.execute(f"SELECT * FROM {src} WHERE split_part(variant_id, ':', 1) = ? AND "
                           f"CAST(split_part(variant_id, ':', 2) AS BIGINT) + 1 BETWEEN ? AND ?", [c, s, e]).fetchall()

    def raw_gene(g):
        return raw.execute(f"SELECT * FROM {src} WHERE gene = ? ORDER BY pathogenicity DESC LIMIT 50", [g]).fetchall()

    raw_exact(exact[0][0])
    parquet = {
        "exact": timed(raw_exact, exact[:nb]),
        "region_100kb": timed(raw_region, regions[:nb]),
        "gene_top50": timed(raw_gene, [(g,) for g in genes[:nb]]),
    }
    for k in ours:
        assert len(ours[k][1][0].rows) == len(parquet[k][1][0]) or k == "gene_top50"

    print(f"\n  {'query':14s} {'ours p50/p99 ms':>18s} {'tabix p50/p99 ms':>18s} {'parquet p50/p99 ms':>20s}"
          f" {'tabix/ours':>11s} {'parquet/ours':>13s}")
    for k in ours:
        o, tb, pqt = pct(ours[k][0]), pct(tabix[k][0]), pct(parquet[k][0])
        res[k] = {"ours_p50_ms": o[0], "ours_p99_ms": o[1], "tabix_p50_ms": tb[0], "tabix_p99_ms": tb[1],
                  "parquet_p50_ms": pqt[0], "parquet_p99_ms": pqt[1],
                  "ratio_tabix": tb[0] / o[0], "ratio_parquet": pqt[0] / o[0],
                  "mean_rows": float(np.mean([len(x.rows) for x in ours[k][1]]))}
        print(f"  {k:14s} {o[0]:8.2f} / {o[1]:7.2f} {tb[0]:8.2f} / {tb[1]:7.2f} {pqt[0]:9.1f} / {pqt[1]:8.1f}"
              f" {tb[0] / o[0]:10.1f}x {pqt[0] / o[0]:12.0f}x")
    print("  (ratios are baseline p50 / ours p50; tabix gets the gene span from our genes table)")

    vcf = work / "input.vcf.gz"
    if not (a.reuse and vcf.exists()):
        t = time.perf_counter()
        write_vcf(vcf, db._con.cursor(), a.vcf_records, seed=3)
        print(f"\n  wrote {a.vcf_records:,}-record VCF in {time.perf_counter() - t:.1f}s")
    cmp = annotate_vs_baseline(db, vcf, work, a.annotate_baseline, a.annotate_repeat)
    res["annotate_vs_baseline"] = cmp
    s = cmp["ours"]["summary"]
    res["annotate"] = s
    n_out = sum(1 for _ in pysam.VariantFile(str(work / "annotated-ours.vcf.gz")))
    assert n_out == s["records"], (n_out, s["records"])
    print(f"  annotate (score + label), ours: {s['records']:,} records, {s['annotated_records']:,} annotated, "
          f"{s['unmatched_records']:,} passed through; output re-read by pysam: {n_out:,} records")
    s2 = vdb.annotate(db, vcf, work / "annotated2.vcf.gz", heads=["score_0", "score_1"])
    res["annotate_2_heads"] = s2
    print(f"  annotate (+ 2 heads): {s2['records_per_s']:,.0f} records/s, steps {s2['seconds_by_step']}")
    s = {**s, "records_per_s": max(cmp["ours"]["records_per_s"])}
    targets = {"exact p50 <= 2 ms": res["exact"]["ours_p50_ms"] <= 2,
               "region p50 <= 20 ms": res["region_100kb"]["ours_p50_ms"] <= 20,
               "gene top-50 p50 <= 20 ms": res["gene_top50"]["ours_p50_ms"] <= 20,
               "annotate >= 500k/s (best of the rounds)": s["records_per_s"] >= 500_000}
    print("\n  targets: " + ", ".join(f"{k}: {'met' if v else 'MISSED'}" for k, v in targets.items()))
    if a.json:
        a.json.write_text(json.dumps(res, indent=2, default=str))
    db.close()
    if not a.keep and a.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    if not (cmp["identical_text"] and cmp["identical_summary"]):
        raise SystemExit("annotate output differs from the baseline's")


# ---------------------------------------------------------------------------------------------
# wide releases


def _child(fn, *args):
    """Run fn(*args) in a child process; return (result, its peak RSS in MB)."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    q = ctx.Queue()

    def run():
        import resource

        out = fn(*args)
        q.put((out, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))

    p = ctx.Process(target=run)
    p.start()
    import queue as _queue

    while True:  # a child killed for memory never answers: poll instead of blocking
        try:
            res = q.get(timeout=2)
            break
        except _queue.Empty:
            if not p.is_alive():
                raise SystemExit(f"child failed (exit {p.exitcode}, e.g. killed for memory): {fn.__name__}") from None
    p.join()
    if p.exitcode:
        raise SystemExit(f"child failed: {fn.__name__}")
    return res


def _gen(work, rows, width, rg):
    from biointerp.db.release import write_synthetic_release

    t = time.perf_counter()
    rel = write_synthetic_release(work / "release", rows, width=width, row_group_size=rg, progress=False)
    return time.perf_counter() - t, rel.shards


def _build(work, store):
    from biointerp.db.wide import build_wide

    t = time.perf_counter()
    build_wide(work / "release", work / f"{store}.duckdb", store=store, overwrite=True)
    return time.perf_counter() - t


def _save(a, res) -> None:
    if a.json:
        tmp = a.json.with_name(a.json.name + ".tmp")
        tmp.write_text(json.dumps(res, indent=2, default=str))
        os.replace(tmp, a.json)


def _queries(work, store, n_q, seed_rows):
    """All query kinds on one store (run in a child so its peak memory is its own)."""
    db = vdb.open(work / f"{store}.duckdb")
    sample = seed_rows
    exact = [(r[0],) for r in sample]
    regions = [(f"{r[1]}:{max(1, r[2] - 50_000)}-{max(1, r[2] - 50_000) + 99_999}",) for r in sample]
    genes = [(r[3],) for r in sample]
    h64 = db.heads[:64]
    kinds = {
        "exact_all": (lambda v: db.lookup(v), exact),
        "gene_top50_all": (lambda g: db.gene(g, top=50), genes),
        "region_100kb_all": (lambda r: db.region(r), regions),
        "region_100kb_none": (lambda r: db.region(r, heads=False), regions),
        "exact_64": (lambda v: db.lookup(v, heads=h64), exact),
        "gene_top50_64": (lambda g: db.gene(g, top=50, heads=h64), genes),
        "region_100kb_64": (lambda r: db.region(r, heads=h64), regions),
    }
    out = {"p50_ms": {}, "p99_ms": {}, "n_queries": {}, "mean_rows": {}}
    slow = store == "inplace"
    for k, (fn, args) in kinds.items():
        lim = args[:max(5, n_q // 20)] if slow and k.endswith("all") else args
        fn(*lim[0])  # warm-up
        ts, n_rows, n_cut = [], [], 0
        for x in lim:  # keep only row counts: 100 results of 10k+ rows would hold gigabytes
            t = time.perf_counter()
            r = fn(*x)
            ts.append(time.perf_counter() - t)
            n_rows.append(len(r.rows))
            n_cut += r.truncated
            del r
        p50, p99 = pct(ts)
        out["p50_ms"][k], out["p99_ms"][k], out["n_queries"][k] = p50, p99, len(lim)
        out["mean_rows"][k] = float(np.mean(n_rows))
        out.setdefault("truncated", {})[k] = n_cut
        print(f"  {store:8s} {k:18s} p50 {p50:9.2f} ms  p99 {p99:9.2f} ms  ({len(lim)} queries, "
              f"{out['mean_rows'][k]:.1f} rows, {n_cut} truncated)", flush=True)
    db.close()
    return out


def _identity(work, stores, rel_dir, sample, nb):
    """Exact and gene top-50 results of each store vs a plain DuckDB scan of the shards (memory-capped)."""
    raw = duckdb.connect()
    raw.execute("SET enable_progress_bar = false")
    raw.execute("SET memory_limit = '2GB'")
    raw.execute("SET threads = 1")
    src = f"read_parquet('{rel_dir}/clean_shard_*.parquet')"
    exact = [r[0] for r in sample[:nb]]
    genes = [r[3] for r in sample[:nb]]
    dbs = {s: vdb.open(work / f"{s}.duckdb") for s in stores}
    srcs = next(iter(dbs.values())).metadata["head_sources"]
    bad, n_vals, ts_e, ts_g = 0, 0, [], []
    for v in exact:
        c, p, r, al = v.split(":")
        t = time.perf_counter()
        df = raw.execute(f"SELECT * FROM {src} WHERE variant_id = ?", [f"{c}:{int(p) - 1}:{r}:{al}"]).fetch_df()
        ts_e.append(time.perf_counter() - t)
        e = df.iloc[0]
        for db in dbs.values():
            got = db.lookup(v).records()[0]
            for h, s in zip(db.heads, srcs):
                x = e[s]
                n_vals += 1
                bad += not ((got[h] is None and (x is None or x != x)) or got[h] == x)
    for g in genes:
        t = time.perf_counter()
        df = raw.execute(f"SELECT variant_id, pathogenicity FROM {src} WHERE gene_name = ? "
                         "ORDER BY pathogenicity DESC NULLS LAST LIMIT 50", [g]).fetch_df()
        ts_g.append(time.perf_counter() - t)
        want = sorted(f"{x.split(':')[0]}:{int(x.split(':')[1]) + 1}:{x.split(':')[2]}:{x.split(':')[3]}"
                      for x in df.variant_id)
        for db in dbs.values():
            got = sorted(r[0] for r in db.gene(g, top=50, heads=False).rows)
            bad += got != want and len(set(df.pathogenicity)) == len(df)
    for db in dbs.values():
        db.close()
    return {"plain_scan_p50_ms": {"exact_all": pct(ts_e)[0], "gene_top50_all": pct(ts_g)[0]},
            "mismatches": bad, "values_compared": n_vals, "queries_compared": 2 * nb}


def main_wide(a) -> None:
    work = a.workdir or Path(tempfile.mkdtemp(prefix="bench_dbw_"))
    work.mkdir(parents=True, exist_ok=True)
    res: dict = {}
    if a.json and a.json.exists() and a.reuse:
        res = json.loads(a.json.read_text())  # resume: finished steps are skipped
    res.update({"rows": a.rows, "width": a.heads, "row_group_size": a.row_group_size, "cpus": os.cpu_count()})
    print(f"bench_db --wide: {a.rows:,} rows x {a.heads:,} columns, row groups of {a.row_group_size:,}, work {work}")
    rel_dir = work / "release"
    if not (a.reuse and (rel_dir / "manifest.json").exists()):
        res.pop("gen_s", None)
        (gen_s, shards), gen_mb = _child(_gen, work, a.rows, a.heads, a.row_group_size)
        res.update(gen_s=gen_s, gen_peak_mb=gen_mb, gen_load=os.getloadavg()[0])
        print(f"  synthetic release written in {gen_s:.0f}s (peak {gen_mb:.0f} MB)", flush=True)
    shards = sorted(rel_dir.glob("clean_shard_*.parquet"))
    pq_bytes = sum(p.stat().st_size for p in shards)
    md = pq.ParquetFile(shards[0]).metadata
    res["release_mb"] = pq_bytes / 1e6
    res["bytes_per_value"] = pq_bytes / (a.rows * a.heads)
    res["row_groups_shard0"] = [md.row_group(g).num_rows for g in range(md.num_row_groups)]
    print(f"  release: {len(shards)} shards, {pq_bytes / 1e6:,.0f} MB ({res['bytes_per_value']:.2f} B/value; "
          f"EVEE's: ~35 GB / (4.25M x 4,906) = 1.68 B/value), row groups in shard 0: {res['row_groups_shard0']}")
    _save(a, res)
    stores = [s for s in a.stores.split(",") if s]
    for store in stores:
        if a.reuse and (work / f"{store}.duckdb").exists() and "build_s" in res.get(store, {}):
            continue
        load = os.getloadavg()[0]
        build_s, mb = _child(_build, work, store)
        extra = (work / f"{store}.duckdb").stat().st_size + sum(
            p.stat().st_size for p in work.glob(f"{store}.duckdb.heads"))
        res[store] = {"build_s": build_s, "build_peak_mb": mb, "extra_mb": extra / 1e6,
                      "extra_pct_of_release": 100 * extra / pq_bytes, "build_load": load}
        print(f"  {store:8s} build (time to a queryable database): {build_s:.1f}s, peak {mb:.0f} MB, extra disk "
              f"{extra / 1e6:,.1f} MB = {100 * extra / pq_bytes:.1f}% of the release (load {load:.1f})", flush=True)
        _save(a, res)
    if a.build_only:
        return
    db0 = vdb.open(work / f"{stores[0]}.duckdb")
    sample = db0._run(f"SELECT variant_id, chrom, pos, gene FROM variants USING SAMPLE reservoir({a.queries} ROWS) "
                      "REPEATABLE (7)", []).rows
    db0.close()
    for store in stores:
        if a.reuse and "p50_ms" in res.get(store, {}):
            continue
        load = os.getloadavg()[0]
        out, mb = _child(_queries, work, store, a.queries, sample)
        res[store].update(out, query_peak_mb=mb, query_load=load)
        print(f"  {store:8s} query-process peak memory {mb:,.0f} MB (load before {load:.1f})", flush=True)
        _save(a, res)
    if not (a.reuse and "mismatches" in res):
        out, mb = _child(_identity, work, stores, rel_dir, sample, a.baseline_queries)
        res.update(out, identity_peak_mb=mb)
        _save(a, res)
    bad = res["mismatches"]
    print(f"  plain DuckDB scan of the shards (memory_limit 2GB): exact p50 "
          f"{res['plain_scan_p50_ms']['exact_all']:.0f} ms, gene top-50 p50 "
          f"{res['plain_scan_p50_ms']['gene_top50_all']:.0f} ms; {res['values_compared']:,} head values and "
          f"{res['queries_compared']} queries compared, mismatches: {bad} (peak {res['identity_peak_mb']:.0f} MB)")
    for store in stores:
        for k in ("exact_all", "gene_top50_all"):
            print(f"  {store:8s} {k}: {res['plain_scan_p50_ms'][k] / res[store]['p50_ms'][k]:,.1f}x faster "
                  "than the plain scan")
    if not a.keep and a.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    if bad:
        raise SystemExit(f"{bad} values differ between our results and the plain scan")


def extrapolate(paths, target: int, md: Path | None = None) -> None:
    """Linear fits (time, disk: a + b*rows) through two --wide runs, projected to ``target`` rows.

    Latencies are not extrapolated: they depend on the release's row-group size (``inplace``) or
    the block size (``packed``), not on the row count; the larger run's figures are carried over.
    Prints (and with ``md`` writes) a Markdown table: per store, both runs and the projection.
    """
    r1, r2 = (json.loads(Path(p).read_text()) for p in paths)
    n1, n2 = r1["rows"], r2["rows"]

    def proj(y1, y2):
        b = (y2 - y1) / (n2 - n1)
        return y1 + b * (target - n1), b

    release_gb = proj(r1["release_mb"], r2["release_mb"])[0] / 1e3
    lines = [f"| {r1['width']:,} columns | {n1:,} rows | {n2:,} rows | {target:,} rows (projected) | target | met |",
             "| --- | --- | --- | --- | --- | --- |",
             f"| release Parquet | {r1['release_mb']:,.0f} MB | {r2['release_mb']:,.0f} MB | "
             f"{release_gb:,.1f} GB | | |"]
    targets = {"exact_all": 10, "gene_top50_all": 50, "region_100kb_none": 20, "region_100kb_all": 20}
    for store in ("inplace", "packed"):
        if store not in r1 or store not in r2 or "p50_ms" not in r2[store]:
            continue
        x1, x2 = r1[store], r2[store]
        bt, slope = proj(x1["build_s"], x2["build_s"])
        ex = proj(x1["extra_mb"], x2["extra_mb"])[0] / 1e3
        mem = max(x1["build_peak_mb"], x2["build_peak_mb"], x1.get("query_peak_mb", 0), x2.get("query_peak_mb", 0))
        ok = lambda c: "yes" if c else "**no**"  # noqa: E731
        lines += [
            f"| **{store}**: time to a queryable DB | {x1['build_s']:.1f} s | {x2['build_s']:.1f} s | "
            f"{bt / 60:.1f} min ({slope * 1e6:.0f} s per M rows) | <= 20 min | {ok(bt <= 1200)} |",
            f"| {store}: extra disk | {x1['extra_mb']:,.1f} MB ({x1['extra_pct_of_release']:.1f}%) | "
            f"{x2['extra_mb']:,.1f} MB ({x2['extra_pct_of_release']:.1f}%) | {ex:,.2f} GB "
            f"({100 * ex / release_gb:.1f}%) | <= 10% | {ok(ex <= 0.1 * release_gb)} |",
            f"| {store}: peak memory (build / queries) | "
            f"{x1['build_peak_mb']:,.0f} / {x1.get('query_peak_mb', 0):,.0f} MB"
            f" | {x2['build_peak_mb']:,.0f} / {x2.get('query_peak_mb', 0):,.0f} MB | max {mem:,.0f} MB (does not grow"
            " with rows) | <= 4 GB | " + ok(mem <= 4096) + " |"]
        for k in x2["p50_ms"]:
            lim = targets.get(k)
            lines.append(f"| {store}: {k} p50 (p99) | {x1['p50_ms'][k]:,.1f} ({x1['p99_ms'][k]:,.1f}) ms | "
                         f"{x2['p50_ms'][k]:,.1f} ({x2['p99_ms'][k]:,.1f}) ms | as at {n2:,} | "
                         + (f"<= {lim} ms | {ok(x2['p50_ms'][k] <= lim)} |" if lim else " | |"))
    if "mismatches" in r1 and "mismatches" in r2:
        lines.append(f"| identity vs plain DuckDB scan | {r1['mismatches']} mismatches in {r1['values_compared']:,}"
                     f" values | {r2['mismatches']} in {r2['values_compared']:,} | | 0 | "
                     f"{'yes' if r1['mismatches'] + r2['mismatches'] == 0 else '**no**'} |")
    loads = [r.get(s, {}).get(k) for r in (r1, r2) for s in ("inplace", "packed") for k in ("build_load", "query_load")]
    loads = [x for x in loads if x is not None]
    text = "\n".join(lines) + (f"\n\nload average during the runs: {min(loads):.1f}-{max(loads):.1f} on "
                               f"{r2.get('cpus')} CPUs" if loads else "")
    print(text)
    if md:
        md.write_text(text + "\n")


if __name__ == "__main__":
    main()
