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
score ranks the test samples, so its AUROC does not depend on n).
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


def learning_curve(source: dict, X: np.ndarray, y: np.ndarray, sizes: Sequence[int | str] = (20, 50, 100, 200, "all"),
                   test_frac: float = 0.5, repeats: int = 5, l2: float = 1e-2, seed: int = 0,
                   progress: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fine-tuned vs from-scratch vs frozen source probe on a new cohort, by training-set size.

    Parameters
    ----------
    source
        The source linear probe in feature space: ``{"w", "b", "mean", "std"}`` (logit =
        ``((x - mean) / std) @ w + b``), e.g. from :func:`source_from_probe`.
    X, y
        New-cohort features ``[n, d]`` (NaN imputed with training means) and 0/1 labels.
    sizes
        Training sizes; ``"all"`` = the whole training pool. Sizes above the pool are skipped.
    test_frac
        Stratified held-out part of the new cohort, fixed for every size and repeat.

    Returns ``(runs, summary)``: one row per (n, repeat, method) with the test AUROC, and the mean,
    sd and count per (n, method).
    """
    from sklearn.model_selection import train_test_split
    from tqdm.auto import tqdm

    from biointerp.probes.evaluate import auroc

    y = np.asarray(y).astype(int)
    idx = np.arange(len(y))
    pool, test = train_test_split(idx, test_size=test_frac, stratify=y, random_state=seed)
    mu = np.nanmean(X[pool], axis=0)
    mu = np.where(np.isfinite(mu), mu, 0.0)
    X = np.where(np.isnan(X), mu[None, :], X)
    w0, b0, m0, s0 = (np.asarray(source[k], float) for k in ("w", "b", "mean", "std"))
    s0 = np.where(s0 > 0, s0, 1.0)

    def src_score(A):
        return ((A - m0) / s0) @ w0 + float(b0)

    frozen = auroc(y[test], src_score(X[test]))
    rows = []
    rng = np.random.default_rng(seed)
    plan = [(len(pool) if n == "all" else int(n), n) for n in sizes]
    plan = [(n, lab) for n, lab in plan if n <= len(pool)]
    for n, lab in tqdm(plan, desc="learning curve", disable=not progress):
        reps = 1 if n == len(pool) else repeats
        for r in range(reps):
            for _ in range(100):
                tr = pool if n == len(pool) else rng.choice(pool, size=n, replace=False)
                if 2 <= y[tr].sum() <= n - 2:
                    break
            ft_w, ft_b = fine_tune_linear(w0, float(b0), m0, s0, X[tr], y[tr], l2=l2)
            ft = auroc(y[test], ((X[test] - m0) / s0) @ ft_w + ft_b)
            sc = auroc(y[test], _scratch(X[tr], y[tr], l2, seed + r)(X[test]))
            for method, a in (("fine_tuned", ft), ("scratch", sc), ("frozen", frozen)):
                rows.append({"n": n, "size": str(lab), "repeat": r, "method": method, "auroc": a,
                             "n_test": int(len(test))})
    runs = pd.DataFrame(rows)
    summary = (runs.groupby(["n", "method"])["auroc"].agg(["mean", "std", "count"]).reset_index()
               .rename(columns={"mean": "auroc_mean", "std": "auroc_sd", "count": "repeats"}))
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
    """AUROC (mean ± sd over repeats) against training size, one line per method; PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for method, g in summary.groupby("method"):
        g = g.sort_values("n")
        ax.errorbar(g["n"], g["auroc_mean"], yerr=g["auroc_sd"].fillna(0), marker="o", capsize=3, label=method)
    ax.set_xscale("log")
    ax.axhline(0.5, ls="--", c="0.5", lw=0.8)
    ax.set_xlabel("labelled samples of the new cohort (n)")
    ax.set_ylabel("held-out AUROC")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
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
