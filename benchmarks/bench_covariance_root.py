"""Covariance probe: EVEE's 3-step Newton-Schulz polynomial vs true PSD square roots, at equal budget.

Ground truth: generated EVEE views (``acts [N, 2, 3, K, d]``) whose label is planted in a
second-order statistic of the variant-minus-reference diffs (the sign of a product of two
feature channels, across positions) plus a weak first-order shift, so a covariance probe is
the right tool and the answer is known. Every probe gets the same budget: same h, p,
learning rate, epochs, patience, seed, train/val/test split. Reported: test AUROC [95%
bootstrap CI], the paired difference to the default, the training wall time, and the
relative root error ||S^2 - C|| / ||C|| of each probe's own C on test inputs.

    python benchmarks/bench_covariance_root.py            # n=3000, K=16, d=32 (~1-2 min on 2 busy cores)
    python benchmarks/bench_covariance_root.py --quick    # n=1200, K=8, d=16

Exits non-zero when a true-root option is not a square root (median error > 1e-4).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import pandas as pd
import torch

from biointerp.probes.covariance import CovarianceBackbone, root_error
from biointerp.probes.evaluate import compare_scores
from biointerp.probes.training import InMemorySource, predict, train_probe

ROOTS = ("newton_schulz", "sym_eigh", "gram_eigh")


def planted(n: int, K: int, d: int, seed: int = 0, coupling: float = 0.3, first_order: float = 0.05):
    """EVEE views with a second-order planted label (and a weak first-order shift)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    sgn = (2 * y - 1).float()[:, None, None]
    ref = torch.randn(n, 2, K, d, generator=g)
    z = torch.randn(n, 2, K, d, generator=g)
    z[..., 1] = coupling * sgn * z[..., 0] + z[..., 1]              # corr(ch0, ch1) carries the label
    z[..., 2] += first_order * sgn                                   # weak first-order signal
    acts = torch.stack([ref + 0.1 * z, ref, ref], 2)
    ids = [f"chr1:{1000 + i}:A:G" for i in range(n)]
    return ids, acts, y.numpy()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--K", type=int, default=16)
    ap.add_argument("--d", type=int, default=32)
    ap.add_argument("--h", type=int, default=16)
    ap.add_argument("--p", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seeds", type=int, default=1, help="repeat with this many seeds (data and init)")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    if a.quick:
        a.n, a.K, a.d, a.h, a.p, a.epochs = 1200, 8, 16, 8, 16, 25
    torch.set_num_threads(1)
    out, bad = [], False
    for seed in range(a.seeds):
        ids, acts, y = planted(a.n, a.K, a.d, seed)
        labels = pd.DataFrame({"label": y}, index=pd.Index(ids, name="variant_id"))
        r = np.random.default_rng(seed).uniform(size=a.n)
        split = pd.Series(np.where(r < 0.6, "train", np.where(r < 0.75, "val", "test")), index=labels.index)
        src = InMemorySource(ids, {"acts": acts})
        test = split.index[split == "test"].tolist()
        scores, rows = {}, []
        for root in ROOTS:
            t0 = time.perf_counter()
            res = train_probe(src, labels, split, kind="covariance", tensor="acts", max_epochs=a.epochs, patience=5,
                              lr=a.lr, seed=seed, accelerator="cpu",
                              hparams={"h": a.h, "p": a.p, "root": root})
            dt = time.perf_counter() - t0
            s = predict(res.probe, src, "acts", test, res.heads)["pathogenicity"].to_numpy()
            with torch.no_grad():
                x = acts[[ids.index(i) for i in test[:256]]]
                C = res.probe.covariance(x)
                S = CovarianceBackbone.forward(res.probe, x)
                err = float(root_error(C, S).median())
                err_own = err
                if root != "newton_schulz":
                    # a true root of the matrix it roots: the symmetric part, PSD-projected
                    lam, V = torch.linalg.eigh((0.5 * (C + C.transpose(1, 2))).double())
                    Cp = ((V * lam.clamp_min(res.probe.eps)[:, None, :]) @ V.transpose(1, 2)).float()
                    err_own = float(root_error(Cp, S).median())
                    bad |= err_own > 1e-4
            scores[root] = s
            rows.append({"seed": seed, "root": root, "seconds": dt, "epochs": res.info.get("epochs"),
                         "best_epoch": res.info.get("best_epoch"), "root_error_vs_C": err,
                         "root_error_of_rooted_matrix": err_own})
        yt = labels.loc[test, "label"].to_numpy()
        cmp = compare_scores(yt, scores, {k: "baseline" if k == "newton_schulz" else "model" for k in scores},
                             n_boot=a.n_boot, seed=seed)
        ov = {r["score"]: r for r in cmp["overall"]}
        vd = {r["score"]: r for r in cmp["verdicts"]}
        for row in rows:
            o = ov[row["root"]]
            row.update(n_test=len(test), auroc=o["auroc"], auroc_lo=o["auroc_lo"], auroc_hi=o["auroc_hi"])
            v = vd.get(row["root"])
            if v:
                row.update(delta_vs_default=v["delta"], delta_lo=v["delta_lo"], delta_hi=v["delta_hi"])
        out += rows
    df = pd.DataFrame(out)
    print(f"planted second-order task: n={a.n} (60/15/25 train/val/test), K={a.K}, d={a.d}, h={a.h}, p={a.p}, "
          f"lr={a.lr}, <= {a.epochs} epochs, patience 5")
    print(df.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if a.json:
        df.to_json(a.json, orient="records", indent=1)
    if bad:
        print("error: a true-root option is not a square root of the matrix it roots", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
