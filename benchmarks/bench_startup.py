"""Benchmark: start-up and pipeline overhead of the command line and the demo.

Times (wall, and CPU of the process with all its children) the acceptance commands of issue #16:
``import biointerp``, every ``biointerp <cmd> [<sub>] --help``, a one-row ``biointerp db query``,
``variants check`` of 3 records; and a one-variant ``biointerp score`` and the whole ``biointerp demo``.

Named baselines:

- the one-shot commands: the same commands from an earlier commit (default ``454f072``, main
  before the pandas-free query work; an older commit also differs by later ``--help`` texts; ``--baseline-tree DIR`` takes a checked-out tree instead,
  e.g. ``/work/main``), exported with ``git archive`` and run through ``PYTHONPATH``, alternating
  with ours. Their outputs must be identical: stdout byte for byte (``variants check``'s
  ``time`` line masked), the table ``variants check`` writes byte for byte, and every ``--help``
  text (a command in ``--help-grew`` may add options but must keep every one the baseline lists); the script exits non-zero otherwise. Both query the same database file, built by the
  baseline's code (so both read the same columns);
- the demo: this checkout with ``BIOINTERP_JOB_PROCESSES=1``, i.e. every workflow job as
  its own ``biointerp`` process (the way the workflows ran before #16), so that the two
  demos must give the same results. The script exits non-zero when they differ:
  ``scores.parquet`` (float columns to 1e-6), every table of ``variants.duckdb`` but its
  build metadata, the report tables and the annotated VCF records. ``--ref-demo`` also
  times the earlier commit's demo (its outputs differ by the features added since).

It prints the ratios and the model work's share of the demo (score + harvest of every
shard, run again in a warm process).

    .venv/bin/python benchmarks/bench_startup.py --no-demo [--repeats 5]   # the one-shot commands only
    .venv/bin/python benchmarks/bench_startup.py [--repeats 5] [--demo-repeats 1] [--ref-demo]
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent / "biointerp"
#: duckdb tables whose rows carry build times, versions or file fingerprints
VOLATILE_TABLES = {"meta", "metadata", "provenance", "build_info"}


def timed(cmd: list[str], root: Path, cwd: Path | None = None,
          env: dict | None = None) -> tuple[float, float, subprocess.CompletedProcess]:
    """(wall s, CPU s of the command and its children, result) of ``cmd`` importing biointerp from ``root``."""
    env = {**os.environ, **(env or {}), "PYTHONPATH": str(root)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    res = subprocess.run(cmd, cwd=cwd or root, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if res.returncode != 0:
        raise SystemExit(f"failed ({res.returncode}): {' '.join(map(str, cmd))}\n{res.stdout[-2000:]}{res.stderr[-2000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), res


def median_of(n: int, cmd: list[str], root: Path, cwd: Path | None = None) -> tuple[float, float]:
    runs = [timed(cmd, root, cwd)[:2] for _ in range(n)]
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)


def help_commands() -> list[list[str]]:
    """``--help`` of the top level, of every command and of every sub-command."""
    sys.path.insert(0, str(REPO))
    from biointerp.cli import COMMANDS, main

    out = [["--help"]]
    for name in sorted(COMMANDS):
        out.append([name, "--help"])
        cmd = main.get_command(None, name)
        out += [[name, sub, "--help"] for sub in sorted(getattr(cmd, "commands", {}))]
    return out


def _masked(text: str) -> str:
    """stdout with the run-time line of ``variants check`` masked."""
    return "\n".join("time      <masked>" if ln.startswith("time      ") else ln for ln in text.splitlines())


def export_ref(ref: str, dest: Path) -> Path:
    """The tree of git ``ref`` under ``dest`` (pipelines and profiles included)."""
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def model_work(demo: Path) -> float:
    """Wall seconds of the demo's score and harvest jobs, run again in one warm process."""
    sys.path.insert(0, str(REPO))
    import yaml

    from biointerp.rulejob import run_in_process

    cfg = yaml.safe_load((REPO / "pipelines" / "probe_training" / "config.yaml").read_text())
    n = 2
    fasta, checked = demo / "inputs" / "genome.fa", demo / "variants" / "checked.parquet"
    layers = [a for layer in cfg["harvest"]["layers"] for a in ("--layer", layer)]
    jobs = []
    for s in range(n):
        jobs.append(["score", "--model", "demo", "--fasta", str(fasta), "--variants", str(checked), "--window",
                     str(cfg["score"]["window"]), "--out", str(demo / "bench" / f"s{s}.h5ad"), "--shard", str(s),
                     "--n-shards", str(n)])
        jobs.append(["harvest", "--model", "demo", "--fasta", str(fasta), "--variants", str(checked), *layers,
                     "--view", cfg["harvest"]["view"], *cfg["harvest"]["extra"].split(), "--store",
                     str(demo / "bench" / f"h{s}"), "--shard", str(s), "--n-shards", str(n)])
    (demo / "bench").mkdir(exist_ok=True)
    run_in_process(jobs[0], str(demo / "bench" / "warm.log"))  # imports, first model load
    shutil.rmtree(demo / "bench")
    (demo / "bench").mkdir()
    t0 = time.perf_counter()
    for k, argv in enumerate(jobs):
        run_in_process(argv, str(demo / "bench" / f"{k}.log"))
    return time.perf_counter() - t0


def _same(x, y) -> bool:
    """Equal values, floats to 1e-6 (NaN equals NaN), lists and rows element by element."""
    if isinstance(x, float) and isinstance(y, float):
        return math.isclose(x, y, rel_tol=0, abs_tol=1e-6) or (math.isnan(x) and math.isnan(y))
    if isinstance(x, (list, tuple)) and isinstance(y, (list, tuple)):
        return len(x) == len(y) and all(_same(u, v) for u, v in zip(x, y))
    if isinstance(x, dict) and isinstance(y, dict):
        return x.keys() == y.keys() and all(_same(x[k], y[k]) for k in x)
    return x == y


def compare_outputs(a: Path, b: Path) -> list[str]:
    """Differences between two demo output folders (empty: the same results)."""
    import duckdb
    import numpy as np
    import pandas as pd

    bad = []
    x, y = pd.read_parquet(a / "scores.parquet"), pd.read_parquet(b / "scores.parquet")
    if list(x.columns) != list(y.columns) or len(x) != len(y):
        return [f"scores.parquet: columns/rows differ {x.shape} vs {y.shape}"]
    for c in x.columns:
        if pd.api.types.is_float_dtype(x[c]):
            if not np.allclose(x[c].to_numpy(), y[c].to_numpy(), rtol=0, atol=1e-6, equal_nan=True):
                bad.append(f"scores.parquet: column {c} differs (max {np.nanmax(np.abs(x[c] - y[c])):.3g})")
        elif not x[c].astype(str).equals(y[c].astype(str)):
            bad.append(f"scores.parquet: column {c} differs")
    ca, cb = duckdb.connect(str(a / "variants.duckdb"), read_only=True), duckdb.connect(str(b / "variants.duckdb"),
                                                                                         read_only=True)
    tables = sorted(r[0] for r in ca.execute("SELECT table_name FROM information_schema.tables").fetchall())
    if tables != sorted(r[0] for r in cb.execute("SELECT table_name FROM information_schema.tables").fetchall()):
        bad.append("variants.duckdb: different tables")
    for t in tables:
        if t in VOLATILE_TABLES:
            continue
        ra, rb = (c.execute(f'SELECT * FROM "{t}" ORDER BY ALL').fetchall() for c in (ca, cb))
        if len(ra) != len(rb) or not all(_same(x, y) for x, y in zip(ra, rb)):
            bad.append(f"variants.duckdb table {t} differs")
    for rel in ["report/summary.tsv", "report/scores.tsv", "report/status_counts.tsv",
                "training/report/summary.tsv"]:
        if (a / rel).read_text() != (b / rel).read_text():
            bad.append(f"{rel} differs")
    recs = [[ln for ln in gzip.open(d / "annotated.vcf.gz", "rt") if not ln.startswith("#")] for d in (a, b)]
    if recs[0] != recs[1]:
        bad.append("annotated.vcf.gz records differ")
    return bad


#: Commands whose --help gained options after the default baseline (454f072): `features train
#: --enrich-*` (issue #13). Their help must still list every option the baseline's did.
HELP_GREW = ("features train",)
OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5, help="median of N runs of each command (default 5)")
    ap.add_argument("--demo-repeats", type=int, default=1, help="runs of each demo (default 1)")
    ap.add_argument("--baseline-ref", default="454f072", help="git commit of the baseline (default 454f072)")
    ap.add_argument("--baseline-tree", type=Path, default=None,
                    help="a checked-out tree to use as the baseline instead of --baseline-ref (e.g. /work/main)")
    ap.add_argument("--no-demo", action="store_true", help="skip the demos (and the output comparison)")
    ap.add_argument("--no-score", action="store_true", help="skip the one-variant score command")
    ap.add_argument("--ref-demo", action="store_true", help="also time the baseline commit's demo")
    ap.add_argument("--help-grew", action="append", default=list(HELP_GREW), metavar="CMD",
                    help="a command whose --help gained options since the baseline: it passes when it still "
                         f"lists every option the baseline's did (default: {', '.join(HELP_GREW)})")
    ap.add_argument("--keep", type=Path, default=None, help="keep the work folder here")
    ap.add_argument("--json", type=Path, default=None, help="also write the one-shot timings as JSON")
    args = ap.parse_args()
    load = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="bench_startup_")) if args.keep is None else args.keep
    work.mkdir(parents=True, exist_ok=True)
    if args.baseline_tree is not None:
        base, base_name = args.baseline_tree.resolve(), f"baseline {args.baseline_tree}"
    else:
        base, base_name = export_ref(args.baseline_ref, work / "baseline"), f"baseline {args.baseline_ref}"
    roots = {"ours": REPO, base_name: base}
    rows: dict[str, dict[str, tuple[float, float]]] = {}
    demo_rows: dict[str, tuple[float, float]] = {}

    # a small database and genome for the one-shot commands (the tiny synthetic genome)
    py = sys.executable
    timed([str(BIN), "synth", "genome", "--preset", "tiny", "--seed", "1", "--variants-per-class", "1",
           "--out", str(work / "g")], REPO)
    vcf = work / "g" / "variants.vcf.gz"
    one = work / "one.vcf"
    lines = [ln for ln in gzip.open(vcf, "rt")]
    one.write_text("".join([ln for ln in lines if ln.startswith("#")] + [next(ln for ln in lines if ln[0] != "#")]))
    chrom, pos, _, ref, alt = one.read_text().splitlines()[-1].split("\t")[:5]
    three = work / "three.vcf"
    three.write_text("".join([ln for ln in lines if ln.startswith("#")] + [ln for ln in lines if ln[0] != "#"][:3]))
    timed([str(BIN), "score", "--model", "demo", "--fasta", str(work / "g" / "genome.fa"), "--variants", str(vcf),
           "--window", "128", "--out", str(work / "s.h5ad")], REPO)
    # one database, built by the baseline's code, queried by both (ours reads older databases as they are)
    timed([str(BIN), "db", "build", str(work / "s.h5ad"), "--out", str(work / "v.duckdb"), "--force"], base)
    vid = f"{chrom}:{pos}:{ref}:{alt}"
    ours_k, base_k = roots
    commands = {
        "import biointerp": lambda k: [py, "-c", "import biointerp"],
        "db query (one row)": lambda k: [str(BIN), "db", "query", vid, "--db", str(work / "v.duckdb")],
        "variants check (3 records)": lambda k: [str(BIN), "variants", "check", "--fasta", str(work / "g" / "genome.fa"),
                                                 "--vcf", str(three), "--out", "three.parquet"],  # in cwd
    }
    for h in help_commands():
        commands["biointerp " + " ".join(h)] = lambda k, h=h: [str(BIN), *h]
    if not args.no_score:
        commands["score (one variant)"] = lambda k: [str(BIN), "score", "--model", "demo", "--fasta",
                                                     str(work / "g" / "genome.fa"), "--variants", str(one), "--window",
                                                     "128", "--out", str(work / "one.h5ad")]
    print(f"Start-up benchmark, median of {args.repeats} (runs alternate ours / baseline); load average "
          f"{load:.2f} at start; {os.cpu_count()} CPUs; baseline: {base}", flush=True)
    print(f"{'command':40s} {'ours wall':>10s} {'ours CPU':>9s} {'base wall':>10s} {'CPU':>7s} {'ratio':>7s}  output")
    differ: list[str] = []
    cwds = {k: work / f"cwd-{i}" for i, k in enumerate(roots)}  # each side runs in its own folder
    for d in cwds.values():
        d.mkdir(exist_ok=True)
    for name, cmd in commands.items():
        runs: dict[str, list] = {k: [] for k in roots}
        outs: dict[str, str] = {}
        for _ in range(args.repeats):
            for k, root in roots.items():
                w, c, res = timed(cmd(k), root, cwd=cwds[k])
                runs[k].append((w, c))
                outs[k] = _masked(res.stdout)
        rows[name] = r = {k: (statistics.median(x[0] for x in v), statistics.median(x[1] for x in v))
                          for k, v in runs.items()}
        same = outs[ours_k] == outs[base_k]
        grew = not same and name.endswith("--help") and name[len("biointerp "):-len(" --help")] in args.help_grew
        if grew:  # options added on purpose since the baseline: none of the baseline's may be gone
            same = set(OPTION.findall(outs[base_k])) <= set(OPTION.findall(outs[ours_k]))
        if name.startswith("variants check"):
            same = same and (cwds[ours_k] / "three.parquet").read_bytes() == (cwds[base_k] / "three.parquet").read_bytes()
        if not same:
            differ.append(name)
        (ow, oc), (bw, bc) = r[ours_k], r[base_k]
        print(f"{name:40s} {ow:9.2f}s {oc:8.2f}s {bw:9.2f}s {bc:6.2f}s {bw / ow:6.2f}x  "
              f"{('options added' if grew else 'identical') if same else 'DIFFERS'}", flush=True)
    helps = [n for n in rows if n.endswith("--help")]
    for k in roots:
        ws = [rows[n][k][0] for n in helps]
        print(f"every --help ({len(helps)} commands), {k}: wall {min(ws):.2f}-{max(ws):.2f} s, "
              f"median {statistics.median(ws):.2f} s")
    targets = {"db query (one row) < 1 s wall": rows["db query (one row)"][ours_k][0] < 1.0,
               "variants check (3 records) < 1 s wall": rows["variants check (3 records)"][ours_k][0] < 1.0,
               "import biointerp < 0.5 s wall": rows["import biointerp"][ours_k][0] < 0.5,
               "every --help < 0.5 s wall": all(rows[n][ours_k][0] < 0.5 for n in helps)}
    print("targets (issue #16, medians): " + "; ".join(f"{k}: {'met' if v else 'MISSED'}" for k, v in targets.items()))
    print(f"one-shot outputs, ours vs baseline: "
          + ("identical (stdout bytes, --help texts, the written table's bytes)" if not differ
             else f"DIFFER for {differ}"))
    if args.json:
        args.json.write_text(json.dumps({"load_avg_start": load, "load_avg_end": os.getloadavg()[0],
                                         "repeats": args.repeats, "baseline": str(base),
                                         "rows": rows, "differ": differ, "targets": targets}, indent=2))

    bad: list[str] = list(differ)
    share = None
    if not args.no_demo:
        demos = {"ours": (REPO, {}), "one process per job": (REPO, {"BIOINTERP_JOB_PROCESSES": "1"})}
        if args.ref_demo:
            demos[f"baseline {args.baseline_ref}"] = (base, {})
        out_of = {}
        for k, (root, env) in demos.items():
            runs = []
            for i in range(args.demo_repeats):
                out = work / f"demo-{k.split()[0]}-{i}"
                cwd = work / f"cwd-{k.split()[0]}"  # Snakemake's .snakemake/ goes here
                cwd.mkdir(exist_ok=True)
                runs.append(timed([str(BIN), "demo", "--outdir", str(out)], root, cwd=cwd, env=env)[:2])
                out_of[k] = out
            demo_rows[k] = (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs))
            print(f"demo, {k}: {demo_rows[k][0]:.1f} s wall, {demo_rows[k][1]:.1f} s CPU (median of "
                  f"{args.demo_repeats}; runs {[round(r[0], 1) for r in runs]}; load {os.getloadavg()[0]:.2f})",
                  flush=True)
        demo_bad = compare_outputs(out_of["ours"], out_of["one process per job"])
        bad += demo_bad
        share = model_work(out_of["ours"])

    print(f"load average at end {os.getloadavg()[0]:.2f}")
    if demo_rows:
        print(f"\n{'biointerp demo':32s} {'wall':>10s} {'CPU':>9s} {'ratio':>7s}")
        for k, (w, c) in demo_rows.items():
            print(f"{k:32s} {w:9.1f}s {c:8.1f}s {w / demo_rows['ours'][0]:6.1f}x")
        ow = demo_rows["ours"][0]
        print(f"model work (score + harvest of the demo's shards, warm): {share:.1f} s = "
              f"{100 * share / ow:.0f}% of our demo's wall time, "
              f"{100 * share / demo_rows['one process per job'][0]:.0f}% of the one-process-per-job demo's")
        print("demo outputs, ours vs one process per job: " + ("identical (floats to 1e-6)" if not demo_bad
                                                                else "DIFFER"))
        for b in demo_bad:
            print("  " + b)
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
