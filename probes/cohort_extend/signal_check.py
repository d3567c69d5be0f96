"""Do the frozen features carry pathogenicity signal at all? Within-region 5-fold CV.

For each region's labelled variants (the same features the learning curve uses: those of the
source probe, e.g. [alt, alt - ref] of the mean-pooled embedding), stratified 5-fold CV of
(1) an L2 logistic regression on the features, (2) the same restricted to SNVs (trained and
tested on SNVs only) and (3) the model-free baselines (variant class, substitution type, both),
fitted on the same training folds. Out-of-fold AUROC with a 95% bootstrap CI, overall and
within SNVs. Writes a TSV and prints a table.

    python probes/cohort_extend/signal_check.py PROBE OUT.tsv NAME=STORE:LABELS [NAME=STORE:LABELS ...]
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd


def main(probe: str, out: str, specs: list[str], k: int = 5, l2: float = 1e-2, n_boot: int = 1000) -> None:
    from sklearn.model_selection import StratifiedKFold

    from biointerp.cli.cohort import _store_xy
    from biointerp.cohort_probe import _fit, _predict
    from biointerp.probes.baselines import baseline_scores, fit_baselines, variant_features
    from biointerp.probes.evaluate import evaluate

    from biointerp.cohort_probe import source_from_probe

    src = source_from_probe(probe)
    rows = []
    for spec in specs:
        name, paths = spec.split("=", 1)
        store, labels = paths.split(":", 1)
        X, y, table = _store_xy([store], labels, "label", src)
        feats = variant_features(table.reset_index())
        snv = feats["variant_class"].to_numpy() == "snv"
        none = np.zeros((len(y), 0))
        oof = {m: np.full(len(y), np.nan) for m in ("probe", "probe_snv_only", "baseline:variant_class",
                                                     "baseline:substitution", "baseline:combined")}
        for tr, te in StratifiedKFold(n_splits=k, shuffle=True, random_state=0).split(X, y):
            fit = _fit(X[tr], y[tr], none[tr], "none", l2, 0)
            oof["probe"][te] = _predict(fit, X[te], none[te])
            tr_s, te_s = tr[snv[tr]], te[snv[te]]
            fit_s = _fit(X[tr_s], y[tr_s], none[tr_s], "none", l2, 0)
            oof["probe_snv_only"][te_s] = _predict(fit_s, X[te_s], none[te_s])
            fb = fit_baselines(feats.iloc[tr], y[tr].astype(float))
            bs = baseline_scores({b: fb[b] for b in ("variant_class", "substitution", "combined")}, feats.iloc[te])
            for b in bs.columns:
                oof[f"baseline:{b}"][te] = bs[b].to_numpy()
        for method, s in oof.items():
            for stratum, sel in (("all", np.ones(len(y), bool)), ("snv", snv)):
                if method == "probe_snv_only" and stratum == "all":
                    continue
                m = evaluate(y[sel], s[sel], n_boot=n_boot, seed=0)
                rows.append({"region": name, "method": method, "stratum": stratum, "n": int(sel.sum()),
                             "n_pos": int(y[sel].sum()), "auroc": m["auroc"], "auroc_lo": m["auroc_ci"][0],
                             "auroc_hi": m["auroc_ci"][1]})
        print(f"{name}: {len(y)} labelled ({int(y.sum())} pathogenic), {int(snv.sum())} SNVs, {X.shape[1]} features")
    res = pd.DataFrame(rows)
    res.to_csv(out, sep="\t", index=False)
    res["cell"] = [f"{a:.3f} [{lo:.3f}, {hi:.3f}]" for a, lo, hi in zip(res["auroc"], res["auroc_lo"], res["auroc_hi"])]
    print(res.pivot(index=["region", "method"], columns="stratum", values="cell").to_string())


if __name__ == "__main__":
    if len(sys.argv) < 4 or sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        sys.exit(0 if len(sys.argv) > 1 and sys.argv[1] in ("-h", "--help") else 2)
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
