"""Cohort sequence path: samples/s and scaling with samples x regions, shared sequences vs a baseline.

Ours: ``sample_features(..., share=True)`` embeds each distinct sequence once (a region that is
reference-identical, or carries the same alleles, in many samples costs one forward pass).
Baseline: ``share=False``, every (sample, region, haplotype) sequence through the model.
Workload: ``biointerp cohort simulate --kind vcf`` cohorts on the demo genome (planted and common
background alleles, VCF -> haplotypes), for each (samples, regions) in the grid.

Prints per grid point the sequences, distinct sequences, forward passes, CPU seconds and samples/s
for both, the ratio, and the growth of ours vs the baseline when samples double. Exits 1 when the
two feature tables differ by more than ``--atol`` (same model, same sequences: only batching
differs). CPU time (process time) is measured: the machine's cores are shared.

    python benchmarks/bench_cohort.py --model demo --samples 20,40,80 --regions 4,8
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="demo")
    ap.add_argument("--layer", default="blocks.4")
    ap.add_argument("--samples", default="20,40,80", help="cohort sizes (half cases)")
    ap.add_argument("--regions", default="4,8", help="regions per cohort")
    ap.add_argument("--region-len", type=int, default=400)
    ap.add_argument("--background", type=int, default=4, help="common background alleles per region")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--atol", type=float, default=1e-3, help="max |ours - baseline| allowed")
    ap.add_argument("--skip-baseline-above", type=int, default=10_000,
                    help="skip the baseline when it would embed more sequences than this")
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args()

    import numpy as np
    import torch

    from biointerp.cohort_embed import sample_features
    from biointerp.cohort_seq import read_regions, read_sample_sheet, vcf_sequences
    from biointerp.cohort_sim import simulate_vcf_cohort
    from biointerp.models import load_model

    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    sizes = [int(x) for x in args.samples.split(",")]
    regs = [int(x) for x in args.regions.split(",")]
    rows, worst = [], 0.0
    print(f"model {args.model} ({model.name}, d={model.d_model}), layer {args.layer}, region length "
          f"{args.region_len} bp, {args.background} background alleles/region, {args.threads} thread(s)")
    print(f"{'samples':>7} {'regions':>7} {'seqs':>6} {'distinct':>8} | {'ours s':>7} {'smp/s':>7} | "
          f"{'base s':>7} {'smp/s':>7} | {'speed-up':>8} {'max|diff|':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        for n_reg in regs:
            for n in sizes:
                d = Path(tmp) / f"c{n}_{n_reg}"
                t0 = time.process_time()
                p = simulate_vcf_cohort(d, n // 2, n - n // 2, n_regions=n_reg, region_len=args.region_len,
                                        n_background=args.background, seed=1)
                sheet = read_sample_sheet(p["samples"], "condition")
                ss = vcf_sequences(p["vcf"], p["fasta"], read_regions(p["regions"]), sheet)
                t_seq = time.process_time() - t0
                c = time.process_time()
                ours = sample_features(model, ss, [args.layer], share=True, batch_size=args.batch_size)
                t_ours = time.process_time() - c
                row = {"samples": n, "regions": n_reg, "sequences": int(len(ss.sequences)),
                       "distinct": int(ss.sequences["seq_id"].nunique()), "sequence_build_s": t_seq,
                       "ours_s": t_ours, "ours_samples_per_s": n / t_ours}
                if len(ss.sequences) <= args.skip_baseline_above:
                    c = time.process_time()
                    base = sample_features(model, ss, [args.layer], share=False, batch_size=args.batch_size)
                    t_base = time.process_time() - c
                    diff = float(np.nanmax(np.abs(ours.X - base.X)))
                    worst = max(worst, diff)
                    row.update(baseline_s=t_base, baseline_samples_per_s=n / t_base, speedup=t_base / t_ours,
                               max_abs_diff=diff)
                rows.append(row)
                print(f"{n:>7} {n_reg:>7} {row['sequences']:>6} {row['distinct']:>8} | {t_ours:>7.1f} "
                      f"{n / t_ours:>7.2f} | {row.get('baseline_s', float('nan')):>7.1f} "
                      f"{row.get('baseline_samples_per_s', float('nan')):>7.2f} | {row.get('speedup', float('nan')):>7.2f}x "
                      f"{row.get('max_abs_diff', float('nan')):>9.1e}", flush=True)
    print("\nscaling when samples double (time ratio; 2.00 = linear):")
    for n_reg in regs:
        sub = [r for r in rows if r["regions"] == n_reg]
        for a, b in zip(sub, sub[1:]):
            f = b["samples"] / a["samples"]
            line = f"  regions {n_reg}: {a['samples']}->{b['samples']} samples (x{f:g}): ours x{b['ours_s'] / a['ours_s']:.2f}"
            if "baseline_s" in a and "baseline_s" in b:
                line += f", baseline x{b['baseline_s'] / a['baseline_s']:.2f}"
            print(line + f"; distinct sequences x{b['distinct'] / a['distinct']:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2) + "\n")
    if worst > args.atol:
        print(f"FAIL: ours and baseline differ by {worst:.2e} > {args.atol}")
        return 1
    print(f"outputs agree (max |diff| {worst:.1e} <= {args.atol})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
