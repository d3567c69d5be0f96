"""Cohort probes: cross-validated linear probes on samples x features, covariates, permutation tests,
probe artifacts, and extending a probe to a new cohort (learning curves).

:func:`cv_probe` — stratified k-fold cross-validation of an L2 logistic regression (scikit-learn,
``class_weight="balanced"`` so an imbalanced cohort does not reduce to its majority class).
Inside every fold, on the training samples only: missing values -> train means; covariates
(``covariate_mode``) either regressed out of every feature (least squares on one-hot /
standardised covariates, coefficients from the training fold) or appended as features;
standardisation; fit. Out-of-fold scores give the AUROC / AUPRC with bootstrap CIs
(:func:`biointerp.probes.evaluate`), a label-permutation p-value (the whole CV re-run on shuffled
labels, ``(1 + #{perm >= observed}) / (1 + n_perm)``) and, with covariates, a covariates-only
AUROC (what the confounders alone predict). The final probe is refitted on every usable sample
and saved by :func:`save_cohort_probe` as a standard linear probe artifact (safetensors + card;
the card holds feature names, imputation means and covariate coefficients).

:func:`learning_curve` — extending a probe to a new cohort: for n = 20, 50, 100, 200, all labelled
samples of the new cohort (stratified draws, repeated), on one fixed held-out test part:
``fine_tuned`` (start at the source probe's weights, L2 pulls towards them, not to zero),
``scratch`` (a new probe from the n samples alone) and ``frozen`` (the source probe unchanged; its
score ranks the test samples, so its AUROC does not depend on n). For variant cohorts the
model-free baselines (variant class, substitution type, both combined) are fitted on the same n
training rows, and AUROCs are also given within each variant class (e.g. SNVs only).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from biointerp.cohort import CohortError, _usable

COVARIATE_MODES = ("none", "regress", "include")


# ------------------------------------------------------------------------------------------- covariates
def covariate_design(obs: pd.DataFrame, covariates: Sequence[str], spec: dict | None = None
                     ) -> tuple[np.ndarray, dict]:
    """Covariates -> numeric design ``[n, c]`` (one-hot categories minus the first, numbers standardised).

    ``spec`` (returned on the first call) fixes categories and scaling, so test samples and new
    cohorts are encoded the same way.
    """
    cols, new_spec = [], {} if spec is None else spec
    for c in covariates:
        if c not in obs.columns:
            raise CohortError(f"covariate {c!r} not in the sample table; columns are {list(obs.columns)}")
        v = obs[c]
        s = new_spec.get(c) if spec is not None else None
        numeric = pd.api.types.is_numeric_dtype(v) if s is None else s["kind"] == "numeric"
        if numeric:
            x = pd.to_numeric(v, errors="coerce").to_numpy(dtype=float)
            if s is None:
                s = {"kind": "numeric", "mean": float(np.nanmean(x)), "std": float(np.nanstd(x) or 1.0)}
            cols.append(((np.where(np.isnan(x), s["mean"], x) - s["mean"]) / s["std"])[:, None])
        else:
            t = v.astype(str).to_numpy()
            if s is None:
                s = {"kind": "categorical", "levels": sorted(set(t))}
            for lev in s["levels"][1:]:
                cols.append((t == lev).astype(float)[:, None])
        new_spec[c] = s
    C = np.concatenate(cols, axis=1) if cols else np.zeros((len(obs), 0))
    return C, new_spec


def _residual_fit(X: np.ndarray, C: np.ndarray) -> np.ndarray:
    """Least-squares coefficients ``[1 + c, d]`` of X on [1, C]."""
    D = np.concatenate([np.ones((len(C), 1)), C], axis=1)
    B, *_ = np.linalg.lstsq(D, X, rcond=None)
    return B


def _residual_apply(X: np.ndarray, C: np.ndarray, B: np.ndarray) -> np.ndarray:
    D = np.concatenate([np.ones((len(C), 1)), C], axis=1)
    return X - D @ B + B[0]  # keep each feature's intercept (its level), remove the covariate part


# ------------------------------------------------------------------------------------------- fitting
def _fit(Xtr, ytr, Ctr, mode: str, l2: float, seed: int) -> dict:
    from sklearn.linear_model import LogisticRegression

    mu = np.nanmean(np.where(np.isnan(Xtr).all(0)[None, :], 0.0, Xtr), axis=0)
    mu = np.where(np.isfinite(mu), mu, 0.0)
    Xi = np.where(np.isnan(Xtr), mu[None, :], Xtr)
    B = None
    if mode == "regress" and Ctr.shape[1]:
        B = _residual_fit(Xi, Ctr)
        Xi = _residual_apply(Xi, Ctr, B)
    if mode == "include" and Ctr.shape[1]:
        Xi = np.concatenate([Xi, Ctr], axis=1)
    m, s = Xi.mean(0), Xi.std(0)
    s = np.where(s > 0, s, 1.0)
    Z = (Xi - m) / s
    clf = LogisticRegression(C=1.0 / (l2 * len(ytr)), class_weight="balanced", max_iter=5000, random_state=seed)
    clf.fit(Z, ytr)
    return {"impute": mu, "B": B, "mean": m, "std": s, "coef": clf.coef_[0].copy(), "intercept": float(clf.intercept_[0]),
            "mode": mode}


def _predict(fit: dict, X, C) -> np.ndarray:
    Xi = np.where(np.isnan(X), fit["impute"][None, :], X)
    if fit["B"] is not None:
        Xi = _residual_apply(Xi, C, fit["B"])
    if fit["mode"] == "include" and C.shape[1]:
        Xi = np.concatenate([Xi, C], axis=1)
    return ((Xi - fit["mean"]) / fit["std"]) @ fit["coef"] + fit["intercept"]


def _cv_scores(X, y, C, mode, k, l2, seed) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import StratifiedKFold

    oof = np.full(len(y), np.nan)
    fold = np.full(len(y), -1)
    for f, (tr, te) in enumerate(StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(X, y)):
        fit = _fit(X[tr], y[tr], C[tr], mode, l2, seed)
        oof[te] = _predict(fit, X[te], C[te])
        fold[te] = f
    return oof, fold


def cv_probe(adata: ad.AnnData, k: int = 5, covariates: Sequence[str] = (), covariate_mode: str = "none",
             l2: float = 1e-2, n_perm: int = 100, n_boot: int = 1000, seed: int = 0,
             features: Sequence[str] | None = None, progress: bool = False) -> dict:
    """Stratified k-fold CV probe with covariates, bootstrap CIs and a permutation p-value (module doc).

    Uses samples with ``status == "ok"`` and a 0/1 ``label``; features with status ``ok`` (or
    ``features``). Returns ``{"metrics", "oof" (Series of out-of-fold logits), "fold", "fit"
    (final probe on all samples), "features", "covariate_spec"}``. Also writes ``obs["cv_score"]``,
    ``obs["cv_fold"]`` and ``uns["biointerp"]["cv_probe"]``.
    """
    from tqdm.auto import tqdm

    from biointerp.probes.evaluate import evaluate
    from biointerp.probes.evaluate import auroc

    if covariate_mode not in COVARIATE_MODES:
        raise CohortError(f"covariate_mode must be one of {COVARIATE_MODES}, not {covariate_mode!r}")
    if covariate_mode != "none" and not covariates:
        raise CohortError(f"covariate_mode={covariate_mode!r} needs --covariate COLUMN")
    ok, yall = _usable(adata)
    rows = np.flatnonzero(ok)
    y = yall[rows].astype(int)
    counts = np.bincount(y, minlength=2)
    if counts.min() < k:
        raise CohortError(f"{k}-fold CV needs at least {k} usable cases and {k} controls; have {counts[1]} cases, "
                          f"{counts[0]} controls (lower --folds)")
    feats = list(adata.var_names[adata.var["status"].astype(str) == "ok"]) if features is None else list(features)
    X = np.asarray(adata[:, feats].X, dtype=np.float64)[rows]
    obs = adata.obs.iloc[rows]
    C, cspec = covariate_design(obs, list(covariates))
    oof, fold = _cv_scores(X, y, C, covariate_mode, k, l2, seed)
    metrics = evaluate(y, oof, n_boot=n_boot, seed=seed)
    metrics["fold_auroc"] = [auroc(y[fold == f], oof[fold == f]) for f in range(k)]
    rng = np.random.default_rng(seed)
    perm = []
    for _ in tqdm(range(n_perm), desc="permutations", disable=not progress):
        yp = rng.permutation(y)
        s, _ = _cv_scores(X, yp, C, covariate_mode, k, l2, seed)
        perm.append(auroc(yp, s))
    perm = np.asarray(perm)
    metrics.update(n_perm=int(n_perm), perm_auroc_mean=float(perm.mean()) if n_perm else float("nan"),
                   perm_auroc_95=float(np.quantile(perm, 0.95)) if n_perm else float("nan"),
                   perm_p=float((1 + (perm >= metrics["auroc"]).sum()) / (1 + n_perm)) if n_perm else float("nan"))
    if covariates:
        cs, _ = _cv_scores(C, y, C[:, :0], "none", k, l2, seed)
        metrics["covariates_only_auroc"] = auroc(y, cs)
    metrics.update(k=k, l2=l2, seed=seed, covariates=list(covariates), covariate_mode=covariate_mode,
                   n_features=len(feats), n_samples=int(len(y)), n_cases=int(counts[1]), n_controls=int(counts[0]),
                   class_weight="balanced", imputation="train-fold mean")
    final = _fit(X, y, C, covariate_mode, l2, seed)
    names = adata.obs_names[rows]
    oof_s = pd.Series(oof, index=names, name="cv_score")
    adata.obs["cv_score"] = oof_s.reindex(adata.obs_names).to_numpy()
    adata.obs["cv_fold"] = pd.Series(fold, index=names).reindex(adata.obs_names).fillna(-1).astype(int).to_numpy()
    adata.uns.setdefault("biointerp", {})["cv_probe"] = {k_: ("none" if v is None else v) for k_, v in metrics.items()}
    return {"metrics": metrics, "oof": oof_s, "fold": fold, "fit": final, "features": feats, "covariate_spec": cspec,
            "perm_aurocs": perm}


def _to_linear_probe(fit: dict):
    import torch

    from biointerp.probes import LinearProbe

    d = len(fit["coef"])
    probe = LinearProbe(d, 1, "pooled", 0.0)
    probe.set_standardisation(torch.tensor(fit["mean"]), torch.tensor(fit["std"]))
    with torch.no_grad():
        probe.linear.weight[0] = torch.tensor(fit["coef"])
        probe.linear.bias[0] = fit["intercept"]
    return probe


def save_cohort_probe(path: str | Path, result: dict, adata: ad.AnnData, model: str | None = None) -> Path:
    """Save the final probe of :func:`cv_probe` as a linear probe artifact with its card."""
    from biointerp.probes import save_probe

    fit = result["fit"]
    info = adata.uns.get("biointerp", {})
    card = {"kind": "linear", "task": "cohort", "model": model or info.get("model", ""),
            "layer": info.get("layers", []), "pooling": {"positions": info.get("poolings"),
                                                        "tracks": info.get("track_pool"),
                                                        "regions": info.get("region_pool")},
            "input": {"features": result["features"], "impute_mean": fit["impute"].tolist(),
                      "covariates": result["metrics"]["covariates"], "covariate_mode": fit["mode"],
                      "covariate_spec": result["covariate_spec"],
                      "residual_coef": None if fit["B"] is None else fit["B"].tolist()},
            "label": {"column": info.get("label_column"), "case": info.get("case"), "control": info.get("control")},
            "metrics": {"cv": {k: v for k, v in result["metrics"].items()}},
            "split": {"how": f"stratified {result['metrics']['k']}-fold CV", "seed": result["metrics"]["seed"]}}
    return save_probe(path, _to_linear_probe(fit), card)


def apply_cohort_probe(path: str | Path, adata: ad.AnnData) -> pd.Series:
    """Logit of a saved cohort probe for every sample of ``adata`` (NaN where a sample is not ``ok``)."""
    import torch

    from biointerp.probes import load_probe

    probe, card = load_probe(path)
    inp = card.get("input", {})
    feats = inp.get("features")
    if not feats:
        raise CohortError(f"{path}: not a cohort probe (its card lists no features)")
    missing = [f for f in feats if f not in adata.var_names]
    if missing:
        raise CohortError(f"{len(missing)} probe features are not in the table (e.g. {missing[:3]})")
    X = np.asarray(adata[:, feats].X, dtype=np.float64)
    mu = np.asarray(inp["impute_mean"])
    X = np.where(np.isnan(X), mu[None, :], X)
    C, _ = covariate_design(adata.obs, inp.get("covariates", []), inp.get("covariate_spec"))
    if inp.get("residual_coef") is not None:
        X = _residual_apply(X, C, np.asarray(inp["residual_coef"]))
    if inp.get("covariate_mode") == "include" and C.shape[1]:
        X = np.concatenate([X, C], axis=1)
    with torch.no_grad():
        s = probe(torch.from_numpy(X).float())[:, 0].double().numpy()
    ok = adata.obs["status"].astype(str).to_numpy() == "ok"
    return pd.Series(np.where(ok, s, np.nan), index=adata.obs_names, name="probe_score")


# ------------------------------------------------------------------------------------------- extension
def fine_tune_linear(w0: np.ndarray, b0: float, mean: np.ndarray, std: np.ndarray, X: np.ndarray, y: np.ndarray,
                     l2: float = 1e-2) -> tuple[np.ndarray, float]:
    """Logistic regression on ``(X - mean) / std`` starting at ``(w0, b0)`` with penalty ``l2/2 ||w - w0||^2``.

    Full-batch L-BFGS (torch). Class-balanced loss. Returns ``(w, b)``.
    """
    import torch
    from torch.nn import functional as F

    Z = torch.from_numpy((X - mean) / std).double()
    yt = torch.from_numpy(y.astype(float))
    pos = max(y.mean(), 1e-6)
    wts = torch.where(yt > 0, 0.5 / pos, 0.5 / max(1 - pos, 1e-6))
    w0t = torch.from_numpy(np.asarray(w0, float))
    w = w0t.clone().requires_grad_(True)
    b = torch.tensor(float(b0), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=500, tolerance_grad=1e-9, tolerance_change=1e-12,
                            history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = (F.binary_cross_entropy_with_logits(Z @ w + b, yt, reduction="none") * wts).mean() \
            + 0.5 * l2 * (w - w0t).pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach().numpy(), float(b.detach())


def _scratch(X, y, l2, seed):
    fit = _fit(X, y, np.zeros((len(y), 0)), "none", l2, seed)
    return lambda Xt: _predict(fit, Xt, np.zeros((len(Xt), 0)))


#: baselines of the learning curve (``biointerp.probes.baselines``), in report order
CURVE_BASELINES = ("variant_class", "substitution", "combined")


def _rows(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with a 0..n-1 index (a ``variant_id`` index kept as a column)."""
    return table.reset_index() if table.index.name == "variant_id" else table.reset_index(drop=True)


def _draw(pool: np.ndarray, y: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` training rows from ``pool``, stratified by label (both classes, at least 2 each)."""
    if n >= len(pool):
        return pool
    pos, neg = pool[y[pool] == 1], pool[y[pool] == 0]
    k = int(round(n * len(pos) / len(pool)))
    k = min(max(k, 2), len(pos), n - 2)
    return np.sort(np.concatenate([rng.choice(pos, size=k, replace=False),
                                   rng.choice(neg, size=n - k, replace=False)]))


def learning_curve(source: dict, X: np.ndarray, y: np.ndarray, sizes: Sequence[int | str] = (20, 50, 100, 200, "all"),
                   test_frac: float = 0.5, repeats: int = 5, l2: float = 1e-2, seed: int = 0,
                   progress: bool = False, table: pd.DataFrame | None = None,
                   source_table: pd.DataFrame | None = None, source_y: np.ndarray | None = None,
                   n_boot: int = 200) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fine-tuned vs from-scratch vs frozen source probe on a new cohort, by training-set size.

    Parameters
    ----------
    source
        The source linear probe in feature space: ``{"w", "b", "mean", "std"}`` (logit =
        ``((x - mean) / std) @ w + b``), e.g. from :func:`source_from_probe`.
    X, y
        New-cohort features ``[n, d]`` (NaN imputed with training-pool means) and 0/1 labels.
    sizes
        Training sizes; ``"all"`` = the whole training pool. Sizes above the pool are skipped.
    test_frac
        Stratified held-out part of the new cohort, fixed for every size and draw.
    repeats
        Training draws per size (stratified by label, seeded); ``"all"`` is drawn once.
    table
        Optional variant table aligned with ``X`` (``ref``/``alt`` columns or ``chrom:pos:ref:alt``
        ids). Adds the model-free baselines of :mod:`biointerp.probes.baselines`
        (``baseline:variant_class``, ``baseline:substitution``, ``baseline:combined``), each
        fitted on the same ``n`` training rows as the probes, and AUROCs within every variant
        class of the test part with at least 5 of each label (stratum ``snv``, ``deletion`` ...).
    source_table, source_y
        Optional source-cohort variants and labels: the same baselines fitted there and applied
        unchanged (``frozen_baseline:...``), the model-free counterpart of ``frozen``.
    n_boot
        Test-set bootstrap resamples per draw (shared by every method, so comparisons are paired).

    Returns ``(runs, summary)``. ``runs``: one row per (n, draw, method, stratum) with the
    held-out AUROC. ``summary``: per (n, method, stratum) the mean and sd over draws and a 95%
    interval, the 2.5/97.5 percentiles of the AUROC over every draw x bootstrap resample of the
    test part (training-draw and test-sampling variation together).
    """
    from sklearn.model_selection import train_test_split
    from tqdm.auto import tqdm

    from biointerp.probes.baselines import baseline_scores, fit_baselines, variant_features
    from biointerp.probes.evaluate import _rank_auc_batch

    y = np.asarray(y).astype(int)
    idx = np.arange(len(y))
    pool, test = train_test_split(idx, test_size=test_frac, stratify=y, random_state=seed)
    pool, test = np.sort(pool), np.sort(test)
    mu = np.nanmean(X[pool], axis=0)
    mu = np.where(np.isfinite(mu), mu, 0.0)
    X = np.where(np.isnan(X), mu[None, :], X)
    w0, b0, m0, s0 = (np.asarray(source[k], float) for k in ("w", "b", "mean", "std"))
    s0 = np.where(s0 > 0, s0, 1.0)
    feats = None
    strata = {"all": np.arange(len(test))}
    if table is not None:
        if len(table) != len(y):
            raise CohortError(f"table has {len(table)} rows for {len(y)} labelled samples")
        feats = variant_features(_rows(table))
        vc = feats["variant_class"].to_numpy()[test]
        for c in ("snv", "deletion", "insertion", "mnv"):
            sel = np.flatnonzero(vc == c)
            if min(y[test][sel].sum(), len(sel) - y[test][sel].sum()) >= 5:  # >= 5 of each class held out
                strata[c] = sel
    rng_b = np.random.default_rng(seed + 1)
    boot = {k: rng_b.integers(0, len(v), size=(n_boot, len(v))) for k, v in strata.items()}
    yt = y[test]

    def aurocs(score_test: np.ndarray) -> dict:
        """Point AUROC and the bootstrap AUROCs per stratum of one test-part score."""
        out = {}
        for k, sel in strata.items():
            s, yy = score_test[sel], yt[sel]
            point = float(_rank_auc_batch(yy[None].astype(float), s[None])[0])
            bs = _rank_auc_batch(yy[boot[k]].astype(float), s[boot[k]]) if n_boot else np.array([])
            out[k] = (point, bs)
        return out

    fixed = {"frozen": aurocs(((X[test] - m0) / s0) @ w0 + float(b0))}
    if feats is not None and source_table is not None and source_y is not None:
        sy = np.asarray(source_y, float)
        fb = fit_baselines(variant_features(_rows(source_table)), sy)
        bs = baseline_scores({k: v for k, v in fb.items() if k in CURVE_BASELINES}, feats.iloc[test])
        for k in bs.columns:
            fixed[f"frozen_baseline:{k}"] = aurocs(bs[k].to_numpy(float))
    rows, dist = [], {}
    rng = np.random.default_rng(seed)
    plan = [(len(pool) if n == "all" else int(n), n) for n in sizes]
    plan = [(n, lab) for n, lab in plan if n <= len(pool)]
    for n, lab in tqdm(plan, desc="learning curve", disable=not progress):
        reps = 1 if n == len(pool) else repeats
        for r in range(reps):
            tr = _draw(pool, y, n, rng)
            res = dict(fixed)
            ft_w, ft_b = fine_tune_linear(w0, float(b0), m0, s0, X[tr], y[tr], l2=l2)
            res["fine_tuned"] = aurocs(((X[test] - m0) / s0) @ ft_w + ft_b)
            res["scratch"] = aurocs(_scratch(X[tr], y[tr], l2, seed + r)(X[test]))
            if feats is not None:
                fb = fit_baselines(feats.iloc[tr], y[tr].astype(float))
                bs = baseline_scores({k: v for k, v in fb.items() if k in CURVE_BASELINES}, feats.iloc[test])
                for k in bs.columns:
                    res[f"baseline:{k}"] = aurocs(bs[k].to_numpy(float))
            for method, per in res.items():
                for stratum, (a, bsv) in per.items():
                    rows.append({"n": n, "size": str(lab), "repeat": r, "method": method, "stratum": stratum,
                                 "auroc": a, "n_test": int(len(strata[stratum]))})
                    dist.setdefault((n, method, stratum), []).append(bsv)
    runs = pd.DataFrame(rows)
    g = runs.groupby(["n", "method", "stratum"], sort=False)
    summary = g["auroc"].agg(["mean", "std", "count"]).rename(
        columns={"mean": "auroc_mean", "std": "auroc_sd", "count": "repeats"}).reset_index()
    summary["n_test"] = g["n_test"].first().to_numpy()
    lo, hi = [], []
    for key in zip(summary["n"], summary["method"], summary["stratum"]):
        v = np.concatenate(dist[key])
        v = v[np.isfinite(v)]
        lo.append(float(np.quantile(v, 0.025)) if len(v) else np.nan)
        hi.append(float(np.quantile(v, 0.975)) if len(v) else np.nan)
    summary["auroc_lo"], summary["auroc_hi"] = lo, hi
    return runs, summary


def source_from_probe(path: str | Path) -> dict:
    """A saved linear probe (variant-level or cohort) as ``{"w", "b", "mean", "std", "card"}``."""
    from biointerp.probes import load_probe

    probe, card = load_probe(path)
    if getattr(probe, "kind", "") != "linear" or probe.n_out != 1:
        raise CohortError(f"{path}: learning curves extend binary linear probes (this one is "
                          f"{getattr(probe, 'kind', type(probe).__name__)})")
    return {"w": probe.linear.weight[0].detach().double().numpy(), "b": float(probe.linear.bias.detach()[0]),
            "mean": probe.mean.double().numpy(), "std": probe.std.double().numpy(), "card": card,
            "features": probe.features, "pairing": probe.pairing}


def learning_curve_plot(summary: pd.DataFrame, path: str | Path, title: str = "") -> Path:
    """Held-out AUROC (mean over draws, bars = the summary's 95% interval) against training size,
    one line per method, one panel per stratum (``all``, then ``snv`` ... when present); PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if "stratum" not in summary:
        summary = summary.assign(stratum="all")
    panels = [s for s in ("all", "snv", "deletion", "insertion", "mnv") if s in set(summary["stratum"])][:2]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2), squeeze=False)
    for ax, stratum in zip(axes[0], panels):
        for method, g in summary[summary["stratum"] == stratum].groupby("method", sort=False):
            g = g.sort_values("n")
            if {"auroc_lo", "auroc_hi"} <= set(g):
                err = np.vstack([g["auroc_mean"] - g["auroc_lo"], g["auroc_hi"] - g["auroc_mean"]]).clip(0)
            else:
                err = g["auroc_sd"].fillna(0).to_numpy()
            ls = ":" if method.startswith("frozen_baseline") else "--" if method.startswith("baseline") else "-"
            ax.errorbar(g["n"], g["auroc_mean"], yerr=err, marker="o", ms=3, capsize=2, ls=ls, label=method)
        ax.set_xscale("log")
        ax.axhline(0.5, ls="--", c="0.5", lw=0.8)
        ax.set_xlabel("labelled training samples of the new cohort (n)")
        ax.set_ylabel(f"held-out AUROC ({stratum})")
        ax.set_title(f"{title} [{stratum}]", fontsize=8)
        ax.legend(fontsize=6)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def adjust_covariates(adata: ad.AnnData, covariates: Sequence[str]) -> ad.AnnData:
    """A copy with every feature's covariate part regressed out (least squares over the ``ok`` samples,
    missing values kept missing); ``uns["biointerp"]["adjusted_for"]`` names the covariates."""
    out = adata.copy()
    ok, _ = _usable(out)
    rows = np.flatnonzero(ok)
    X = np.asarray(out.X, dtype=np.float64)
    C, _ = covariate_design(out.obs.iloc[rows], list(covariates))
    sub = X[rows]
    mu = np.nanmean(np.where(np.isnan(sub).all(0)[None, :], 0.0, sub), axis=0)
    filled = np.where(np.isnan(sub), mu[None, :], sub)
    R = _residual_apply(filled, C, _residual_fit(filled, C))
    X[rows] = np.where(np.isnan(sub), np.nan, R)
    out.X = X.astype(np.float32)
    out.uns.setdefault("biointerp", {})["adjusted_for"] = list(covariates)
    return out
