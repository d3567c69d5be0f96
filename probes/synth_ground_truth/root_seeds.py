"""Covariance-probe roots over training seeds: AUROC and paired difference from newton_schulz, per test set.

One training seed per root leaves the root's effect confounded with the seed; this takes the
probes run.sh trained with ``SEEDS`` (score columns ``probe_covariance[_<root>][_s<seed>]``, seed 0
without the suffix) and reports per test set, seed and root the AUROC [95% CI] and the paired
bootstrap difference from the newton_schulz probe of the same seed, then the mean over seeds and
the range of the per-seed differences.

    python probes/synth_ground_truth/root_seeds.py --scores scores.h5ad --labels labels.tsv \\
        --roots "newton_schulz sym_eigh gram_eigh" --seeds "0 1 2" --out root_seeds.tsv
"""
from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

from biointerp.probes.evaluate import auroc_difference, evaluate
from biointerp.tables import read_scores, scores_frame


def column(root: str, seed: int) -> str:
    """Score column of the covariance probe with this root and training seed (run.sh's names)."""
    base = "probe_covariance" if root == "newton_schulz" else f"probe_covariance_{root}"
    return base if seed == 0 else f"{base}_s{seed}"


def root_seeds(scores: pd.DataFrame, labels: pd.DataFrame, roots: list[str], seeds: list[int],
               n_boot: int = 1000, set_column: str = "test_set") -> pd.DataFrame:
    """Rows: test_set, root, seed, n, auroc, lo, hi, delta (vs newton_schulz, same seed), delta_lo, delta_hi."""
    d = labels.merge(scores, on="variant_id", how="left")
    rows = []
    for ts, sub in d[d[set_column].astype(str).str.startswith("test")].groupby(set_column, sort=True):
        y = (sub["label"] == "damaging").to_numpy(float)
        for seed in seeds:
            ref = column("newton_schulz", seed)
            for root in roots:
                c = column(root, seed)
                if c not in sub.columns or ref not in sub.columns:
                    raise SystemExit(f"score column {c!r} or {ref!r} missing: train it with run.sh SEEDS")
                m = evaluate(y, sub[c].to_numpy(float), n_boot=n_boot)
                lo, hi = m["auroc_ci"]
                dd = {"delta": np.nan, "delta_lo": np.nan, "delta_hi": np.nan} if c == ref else \
                    auroc_difference(y, sub[c].to_numpy(float), sub[ref].to_numpy(float), n_boot=n_boot)
                rows.append({"test_set": ts, "root": root, "seed": seed, "n": m["n"], "auroc": m["auroc"],
                             "lo": lo, "hi": hi, "delta": dd["delta"], "delta_lo": dd["delta_lo"],
                             "delta_hi": dd["delta_hi"]})
    return pd.DataFrame(rows)


def summary(tab: pd.DataFrame) -> pd.DataFrame:
    """Per test set and root: mean AUROC over seeds, its min–max, mean difference and min–max of differences."""
    g = tab.groupby(["test_set", "root"], sort=False)
    return pd.DataFrame({"n_seeds": g["seed"].size(), "auroc_mean": g["auroc"].mean(), "auroc_min": g["auroc"].min(),
                         "auroc_max": g["auroc"].max(), "delta_mean": g["delta"].mean(),
                         "delta_min": g["delta"].min(), "delta_max": g["delta"].max(),
                         "n_separated": g.apply(lambda x: int(((x["delta_lo"] > 0) | (x["delta_hi"] < 0)).sum()),
                                                include_groups=False)}).reset_index()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scores", required=True, help="scores table (.h5ad) with the probe columns")
    ap.add_argument("--labels", required=True, help="labels TSV: variant_id, label, test_set")
    ap.add_argument("--roots", default="newton_schulz sym_eigh gram_eigh")
    ap.add_argument("--seeds", default="0 1 2")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--out", required=True, help="output TSV (per seed); the summary goes beside it")
    a = ap.parse_args()
    scores = scores_frame(read_scores(a.scores), obs_columns=())
    labels = pd.read_csv(a.labels, sep="\t")[["variant_id", "label", "test_set"]]
    tab = root_seeds(scores, labels, a.roots.split(), [int(s) for s in a.seeds.split()], a.n_boot)
    tab.to_csv(a.out, sep="\t", index=False)
    s = summary(tab)
    s.to_csv(a.out.removesuffix(".tsv") + "_summary.tsv", sep="\t", index=False)
    with pd.option_context("display.width", 200, "display.precision", 3):
        print(tab.to_string(index=False))
        print(s.to_string(index=False))


if __name__ == "__main__":
    main()
