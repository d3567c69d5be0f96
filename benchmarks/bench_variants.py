"""Benchmark: reading the full ClinVar VCF into the normalised variant table.

Ours: ``biointerp.variants.read_variants`` (text parse + pyarrow/pandas vectorised
INFO extraction, allele checks and normalisation), without and with the BRCA1
region FASTA. Baseline: the usual pysam loop, one Python dict per record
(``pysam.VariantFile`` + ``rec.info[...]``) fed to ``pandas.DataFrame``, which
does no checking or normalisation at all.

    .venv/bin/python benchmarks/bench_variants.py [--quick] [--repeats N]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd
import pysam

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from biointerp.genome import Genome  # noqa: E402
from biointerp.variants import read_variants, status_counts  # noqa: E402

DATA = REPO.parent / "shared" / "data"
VCF = DATA / "variants" / "clinvar_20161102.GRCh37.vcf.gz"
FASTA = DATA / "reference" / "brca1_region.GRCh37.fa"
INFO = ["CLINICAL_SIGNIFICANCE", "GOLD_STARS", "SYMBOL"]


def baseline_pysam(path: Path, limit: int | None) -> pd.DataFrame:
    """pysam per-record loop building dicts (multi-allelic split, requested INFO)."""
    rows = []
    with pysam.VariantFile(str(path)) as vf:
        for k, rec in enumerate(vf):
            if limit is not None and k >= limit:
                break
            info = rec.info
            vals = {key: (info[key] if key in info else None) for key in INFO}
            for alt in rec.alts or ():
                rows.append({"chrom": rec.chrom, "pos": rec.pos, "ref": rec.ref, "alt": alt, **vals})
    return pd.DataFrame(rows)


def best(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one repeat (default: best of 3)")
    ap.add_argument("--repeats", type=int, default=None)
    args = ap.parse_args()
    if not VCF.exists():
        sys.exit(f"missing {VCF}: check out ../shared/data beside the repository")
    reps = args.repeats or (1 if args.quick else 3)

    t_base, base = best(lambda: baseline_pysam(VCF, None), reps)
    t_ours, ours = best(lambda: read_variants(VCF, info_fields=INFO), reps)
    genome = Genome(FASTA)
    t_fa, ours_fa = best(lambda: read_variants(VCF, genome, info_fields=INFO), reps)
    assert len(base) == len(ours) == len(ours_fa), (len(base), len(ours), len(ours_fa))
    n = len(ours)
    print(f"ClinVar VCF: {n} rows ({VCF.name}), best of {reps}")
    print(f"  baseline pysam per-record dict loop : {t_base:6.2f} s  (no checks, no normalisation)")
    print(f"  read_variants, no FASTA             : {t_ours:6.2f} s  ratio baseline/ours = {t_base / t_ours:.2f}x")
    print(f"  read_variants, BRCA1 region FASTA   : {t_fa:6.2f} s  ratio baseline/ours = {t_base / t_fa:.2f}x")
    print(f"  statuses with FASTA: {status_counts(ours_fa)}")
    print(f"  acceptance (< 20 s): {'PASS' if max(t_ours, t_fa) < 20 else 'FAIL'}")


if __name__ == "__main__":
    main()
