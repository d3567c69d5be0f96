"""``biointerp db annotate`` throughput: the current code against a named baseline commit, same input.

The workload is bench_db.py's: the synthetic EVEE-like database (default 4.25M rows, 64 heads;
pass ``--db`` to reuse one, e.g. bench_db.py's ``--workdir --keep`` output) and a sorted
1M-record VCF written by ``bench_db.write_vcf`` (~70% database variants, 2% multi-allelic).
The baseline is ``biointerp/db/annotate.py`` as it was at ``--baseline-ref`` (loaded from git),
run in the same process on the same files, alternating with ours for ``--repeat`` rounds.
Reported: records/s end to end (best and median), process CPU seconds, per-step seconds and
the ratio. The decompressed outputs must be byte-identical (and, since both write BGZF level
1 through htslib's zlib, the compressed files too); the script exits non-zero otherwise.

    python benchmarks/bench_annotate.py --db /path/variants.duckdb --vcf /path/input.vcf.gz
    python benchmarks/bench_annotate.py --rows 200000 --vcf-records 100000     # quick, builds its own
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
BASELINE_REF = "e0bb00a"  # main before issue #15's annotate changes (328k records/s in bench_db)


def load_baseline(ref: str):
    src = subprocess.run(["git", "-C", str(REPO), "show", f"{ref}:biointerp/db/annotate.py"], check=True,
                         capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp(prefix="bench_annotate_")) / "annotate_baseline.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("annotate_baseline", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", type=Path, default=None)
    ap.add_argument("--vcf", type=Path, default=None, help="input VCF (written with bench_db.write_vcf when absent)")
    ap.add_argument("--rows", type=int, default=4_250_000, help="database rows when --db is not given")
    ap.add_argument("--vcf-records", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--heads", default="", help="comma list of head columns to add (default: score + label only)")
    ap.add_argument("--baseline-ref", default=BASELINE_REF)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))
    import biointerp.db as vdb
    from bench_db import write_vcf

    work = Path(tempfile.mkdtemp(prefix="bench_annotate_"))
    db_path = a.db
    if db_path is None:
        import pyarrow.parquet as pq

        from biointerp.db.evee import synthetic_evee

        pq.write_table(synthetic_evee(a.rows, n_heads=64, seed=0), work / "evee.parquet")
        db_path = work / "variants.duckdb"
        vdb.build([work / "evee.parquet"], db_path, fingerprint=False)
    db = vdb.open(db_path)
    vcf = a.vcf or work / "input.vcf.gz"
    if not vcf.exists():
        write_vcf(vcf, db._con.cursor(), a.vcf_records, seed=3)
    heads = [h for h in a.heads.split(",") if h]
    base = load_baseline(a.baseline_ref)
    runs = {"baseline": (base.annotate_vcf, work / "base.vcf.gz"), "ours": (vdb.annotate, work / "ours.vcf.gz")}
    print(f"bench_annotate: {db_path} ({db.metadata['n_rows']:,} rows), {vcf}; baseline {a.baseline_ref}; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    res: dict = {"baseline_ref": a.baseline_ref, "load_avg_before": os.getloadavg()[0], "cpus": os.cpu_count()}
    for name, (fn, out) in runs.items():  # warm-up: page cache, imports
        fn(db, vcf, out, heads=heads)
    for name in runs:
        res[name] = {"records_per_s": [], "cpu_s": [], "steps": []}
    for _ in range(a.repeat):
        for name, (fn, out) in runs.items():
            c = time.process_time()
            s = fn(db, vcf, out, heads=heads)
            res[name]["cpu_s"].append(time.process_time() - c)
            res[name]["records_per_s"].append(s["records_per_s"])
            res[name]["steps"].append(s["seconds_by_step"])
            res[name]["records"] = s["records"]
    for name in runs:
        r = res[name]
        print(f"  {name:8s} {r['records']:,} records: best {max(r['records_per_s']):>9,.0f} records/s, median "
              f"{np.median(r['records_per_s']):>9,.0f}; CPU {np.median(r['cpu_s']):.2f} s; steps (last run) {r['steps'][-1]}")
    digests = {n: hashlib.sha256(gzip.open(o).read()).hexdigest() for n, (_f, o) in runs.items()}
    same_text = digests["baseline"] == digests["ours"]
    same_bgzf = runs["baseline"][1].read_bytes() == runs["ours"][1].read_bytes()
    ratio = max(res["ours"]["records_per_s"]) / max(res["baseline"]["records_per_s"])
    print(f"  ours / baseline: {ratio:.2f}x records/s (best of {a.repeat}), CPU "
          f"{np.median(res['baseline']['cpu_s']) / np.median(res['ours']['cpu_s']):.2f}x less; output text identical: "
          f"{same_text} (sha256 {digests['ours'][:16]}), compressed bytes identical: {same_bgzf}; "
          f"load average after {os.getloadavg()[0]:.1f}")
    res.update(ratio=ratio, identical_text=same_text, identical_bgzf=same_bgzf, load_avg_after=os.getloadavg()[0])
    if a.json:
        a.json.write_text(json.dumps(res, indent=2))
    db.close()
    if not same_text:
        sys.exit(1)


if __name__ == "__main__":
    main()
