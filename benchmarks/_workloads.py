"""Shared by bench_scoring.py and bench_harvest.py: variant workloads (real ClinVar BRCA1
positions) and the timer."""

from __future__ import annotations


def pick_variants(table, n: int, how: str):
    """``first``: the first n ok records; ``random``: all alleles at randomly chosen
    positions (seed 0) until n, so alleles per position follow ClinVar's own mix."""
    import numpy as np

    table = table[table["status"] == "ok"]
    if how == "first":
        return table.head(n).reset_index(drop=True)
    pos = table["pos"].unique()
    keep, total = [], 0
    for p in np.random.RandomState(0).permutation(pos):
        keep.append(p)
        total += int((table["pos"] == p).sum())
        if total >= n:
            break
    return table[table["pos"].isin(keep)].reset_index(drop=True)


def saturation_variants(table, genome, n: int):
    """All three SNVs at random ClinVar positions (seed 0, same position order as
    ``pick_variants``) until at least n: a saturation-mutagenesis set on real sequence."""
    import numpy as np
    import pandas as pd

    table = table[table["status"] == "ok"]
    rows = []
    for p in np.random.RandomState(0).permutation(table["pos"].unique()):
        chrom = str(table.loc[table["pos"] == p, "chrom"].iloc[0])
        ref = genome.fetch(chrom, int(p), int(p))
        if ref not in "ACGT":
            continue
        for alt in "ACGT".replace(ref, ""):
            rows.append({"variant_id": f"{chrom}:{p}:{ref}:{alt}", "chrom": chrom, "pos": int(p),
                         "ref": ref, "alt": alt, "status": "ok", "status_detail": ""})
        if len(rows) >= n:
            break
    return pd.DataFrame(rows)


def timed(fn, cuda: bool):
    """Run ``fn()``; return ``(result, seconds)``: wall time on CUDA, process CPU time on CPU
    (this machine's cores are shared, so wall time there mostly measures the neighbours)."""
    import time

    import torch

    if cuda:
        torch.cuda.synchronize()
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    if cuda:
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    print(f"    ({'wall' if cuda else 'cpu'} time used; wall {wall:.1f} s, cpu {cpu:.1f} s)")
    return out, (wall if cuda else cpu)


def add_run_args(ap) -> None:
    """Options both speed benchmarks take: device, dtype, CPU threads, repeats."""
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: shared, contended machine)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="alternate baseline and ours this many times and keep each one's least time "
                         "(CPU time on a contended machine varies by 20%% from run to run)")
