"""Per-consequence-class AUROC [95% CI] of every score on the synthetic ground truth, per test set.

Each consequence class carries one label, so a within-class AUROC is undefined; as in
``biointerp.synth.zero_shot_eval`` (which this calls), a damaging class is ranked against
every neutral variant of the same test set and a neutral class against every damaging one
(0.5 = chance, 1 = perfect).

    python probes/synth_ground_truth/per_class.py --scores scores.h5ad --labels labels.tsv \
        --score probe_linear --score -delta_ll --out per_class.tsv
"""
from __future__ import annotations

import argparse

import pandas as pd

from biointerp.synth import zero_shot_eval
from biointerp.tables import read_scores, scores_frame


def per_class(scores: pd.DataFrame, labels: pd.DataFrame, names: list[str], n_boot: int,
              set_column: str = "test_set") -> pd.DataFrame:
    """Long table: test_set, score, class (``all`` = damaging vs neutral), label, n, auroc, lo, hi."""
    rows = []
    lab = labels[labels[set_column].astype(str).str.startswith("test")]
    for ts, sub in lab.groupby(set_column, sort=True):
        for name in names:
            col, sign = (name[1:], -1.0) if name.startswith("-") else (name, 1.0)
            if col not in scores.columns:
                raise SystemExit(f"score column {col!r} not in the scores table")
            # zero_shot_eval ranks by -delta_ll: hand it -score so that a higher score = damaging
            dll = pd.DataFrame({"variant_id": scores["variant_id"], "delta_ll": -sign * scores[col]})
            _, m = zero_shot_eval(None, None, sub, scores=dll, n_boot=n_boot)
            lo, hi = m.get("overall_ci", [float("nan")] * 2)
            rows.append((ts, name, "all", "", m["n"], m["overall"], lo, hi))
            for cls, r in sorted(m["per_class"].items()):
                rows.append((ts, name, cls, r["label"], r["n"], r["auroc"], r.get("auroc_lo"), r.get("auroc_hi")))
    return pd.DataFrame(rows, columns=["test_set", "score", "class", "label", "n", "auroc", "lo", "hi"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scores", required=True, help="scores table (.h5ad) with the score columns")
    ap.add_argument("--labels", required=True, help="labels TSV: variant_id, consequence, label, test_set")
    ap.add_argument("--score", action="append", required=True, help="score column; '-' prefix = lower is damaging")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--out", required=True, help="output TSV")
    a = ap.parse_args()
    scores = scores_frame(read_scores(a.scores), obs_columns=())
    labels = pd.read_csv(a.labels, sep="\t")
    tab = per_class(scores, labels, a.score, a.n_boot)
    tab.to_csv(a.out, sep="\t", index=False)
    print(f"{a.out}: {len(tab)} rows")
    for (ts, name), g in tab.groupby(["test_set", "score"], sort=False):
        print(f"{ts} {name}: all {g.iloc[0]['auroc']:.3f} [{g.iloc[0]['lo']:.3f}, {g.iloc[0]['hi']:.3f}]")


if __name__ == "__main__":
    main()
