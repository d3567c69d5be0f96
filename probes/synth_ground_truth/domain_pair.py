"""Matched-pair check: missense_domain (damaging) vs missense_outside_domain (neutral) AUROC [95% CI].

A per-class AUROC ranks a class against every variant of the other label, so a score that only
tells coding SNVs from non-coding ones already looks good on ``missense_domain``. Ranking the
two missense classes against each other asks whether a score knows where the domains are.

    python probes/synth_ground_truth/domain_pair.py --run results/synth_novel/model \\
        --run results/synth_novel/control --score=-delta_ll --score probe_linear
"""
from __future__ import annotations

import argparse

import pandas as pd

from biointerp.probes.evaluate import evaluate
from biointerp.tables import read_scores, scores_frame

PAIR = ("missense_domain", "missense_outside_domain")


def domain_pair(scores: pd.DataFrame, labels: pd.DataFrame, names: list[str], n_boot: int = 1000) -> pd.DataFrame:
    """Rows: test_set, score, n, auroc, lo, hi (missense_domain = positive; '-' prefix flips a score)."""
    d = labels[labels["consequence"].isin(PAIR) & labels["test_set"].astype(str).str.startswith("test")]
    d = d.merge(scores, on="variant_id", how="left")
    rows = []
    for ts, sub in d.groupby("test_set", sort=True):
        y = (sub["consequence"] == PAIR[0]).to_numpy(float)
        for name in names:
            col, sign = (name[1:], -1.0) if name.startswith("-") else (name, 1.0)
            m = evaluate(y, sign * sub[col].to_numpy(float), n_boot=n_boot)
            rows.append((ts, name, m["n"], m["auroc"], *m["auroc_ci"]))
    return pd.DataFrame(rows, columns=["test_set", "score", "n", "auroc", "lo", "hi"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", action="append", required=True, help="run.sh OUT folder (scores.h5ad, labels.tsv)")
    ap.add_argument("--score", action="append", required=True, help="score column; '-' prefix = lower is damaging")
    ap.add_argument("--n-boot", type=int, default=1000)
    a = ap.parse_args()
    for run in a.run:
        s = scores_frame(read_scores(f"{run}/scores.h5ad"), obs_columns=())
        lab = pd.read_csv(f"{run}/labels.tsv", sep="\t")[["variant_id", "consequence", "test_set"]]
        for r in domain_pair(s, lab, a.score, a.n_boot).itertuples():
            print(f"{run} {r.test_set} {r.score}: {r.auroc:.3f} [{r.lo:.3f}, {r.hi:.3f}] (n={r.n})")


if __name__ == "__main__":
    main()
