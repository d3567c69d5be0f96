"""Honest probe evaluation: AUROC / AUPRC with percentile bootstrap CIs, strata,
calibration (reliability table, Platt / isotonic maps storable in a probe card)
and ROC / calibration plots.

Only rows with a finite score and a binary label (0/1) are evaluated; the number
of rows left out is reported (``n_missing``), never hidden.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

LABEL_MAP = {"pathogenic": 1, "likely_pathogenic": 1, "benign": 0, "likely_benign": 0,
             "1": 1, "0": 0, "true": 1, "false": 0, "case": 1, "control": 0, "tumor": 1, "normal": 0,
             "damaging": 1, "neutral": 0, "deleterious": 1, "tolerated": 0}


def binary_labels(values: Sequence | pd.Series) -> np.ndarray:
    """Map labels to 1.0 / 0.0, NaN for anything else ('other', VUS, missing).

    Accepts 0/1 numbers and bools, and the strings pathogenic/benign (and
    likely_*), damaging/neutral, deleterious/tolerated, case/control, tumor/normal, true/false.
    """
    s = pd.Series(values)
    if pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s):
        f = s.astype(float).to_numpy()
        return np.where(np.isin(f, (0.0, 1.0)), f, np.nan)
    key = s.astype("string").str.strip().str.lower().str.replace(" ", "_")
    return key.map(LABEL_MAP).astype(float).to_numpy()


def _rank_auc_batch(y: np.ndarray, s: np.ndarray) -> np.ndarray:
    """AUROC per row of ``y, s [B, n]`` via the Mann-Whitney U statistic (ties averaged)."""
    order = np.argsort(s, axis=1, kind="mergesort")
    ss = np.take_along_axis(s, order, 1)
    yy = np.take_along_axis(y, order, 1)
    n = s.shape[1]
    idx = np.broadcast_to(np.arange(n), s.shape)
    new_group = np.ones(s.shape, dtype=bool)
    new_group[:, 1:] = ss[:, 1:] != ss[:, :-1]
    end_group = np.ones(s.shape, dtype=bool)
    end_group[:, :-1] = new_group[:, 1:]
    first = np.maximum.accumulate(np.where(new_group, idx, 0), axis=1)
    last = np.minimum.accumulate(np.where(end_group, idx, n - 1)[:, ::-1], axis=1)[:, ::-1]
    ranks = (first + last) / 2.0 + 1.0  # average rank over ties
    n_pos = yy.sum(1)
    n_neg = n - n_pos
    u = (ranks * yy).sum(1) - n_pos * (n_pos + 1) / 2.0
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((n_pos > 0) & (n_neg > 0), u / (n_pos * n_neg), np.nan)


def _ap_batch(y: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Average precision (area under the step PR curve, as scikit-learn) per row."""
    order = np.argsort(-s, axis=1, kind="mergesort")
    ss = np.take_along_axis(s, order, 1)
    yy = np.take_along_axis(y, order, 1)
    tp = np.cumsum(yy, 1)
    k = np.arange(1, s.shape[1] + 1)
    # only count thresholds at the last element of each tie group
    last = np.ones_like(ss, dtype=bool)
    last[:, :-1] = ss[:, 1:] != ss[:, :-1]
    n_pos = yy.sum(1)
    prec = tp / k
    tp_end = np.where(last, tp, 0.0)
    prev = np.maximum.accumulate(np.concatenate([np.zeros((s.shape[0], 1)), tp_end[:, :-1]], 1), axis=1)
    d_recall = np.where(last, tp - prev, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_pos > 0, (prec * d_recall).sum(1) / n_pos, np.nan)


def auroc(y: Sequence, score: Sequence) -> float:
    """Area under the ROC curve (ties averaged); NaN with a single class."""
    y, s = np.asarray(y, float)[None], np.asarray(score, float)[None]
    return float(_rank_auc_batch(y, s)[0])


def auprc(y: Sequence, score: Sequence) -> float:
    """Average precision (scikit-learn's definition)."""
    y, s = np.asarray(y, float)[None], np.asarray(score, float)[None]
    return float(_ap_batch(y, s)[0])


def bootstrap_ci(y: np.ndarray, s: np.ndarray, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0,
                 chunk: int = 200) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap CIs of AUROC and AUPRC over ``n_boot`` resamples of the rows."""
    rng = np.random.default_rng(seed)
    n = len(y)
    aucs, aps = [], []
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        idx = rng.integers(0, n, size=(b, n))
        yb, sb = y[idx], s[idx]
        aucs.append(_rank_auc_batch(yb, sb))
        aps.append(_ap_batch(yb, sb))
    out = {}
    for name, vals in (("auroc", np.concatenate(aucs)), ("auprc", np.concatenate(aps))):
        vals = vals[np.isfinite(vals)]
        out[name] = (float(np.quantile(vals, alpha / 2)), float(np.quantile(vals, 1 - alpha / 2))) \
            if len(vals) else (float("nan"), float("nan"))
    return out


def evaluate(y: Sequence, score: Sequence, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0) -> dict:
    """AUROC and AUPRC with percentile bootstrap CIs.

    Parameters
    ----------
    y
        Labels (0/1 or strings understood by :func:`binary_labels`).
    score
        Higher = more likely positive. Non-finite scores are left out and counted.
    n_boot
        Bootstrap resamples (0 disables the CIs).

    Returns
    -------
    ``{"n", "n_pos", "n_neg", "n_missing", "auroc", "auroc_ci": [lo, hi],
    "auprc", "auprc_ci", "prevalence"}``.
    """
    yv = binary_labels(y)
    s = np.asarray(score, dtype=float)
    ok = np.isfinite(yv) & np.isfinite(s)
    yv, s = yv[ok], s[ok]
    res = {"n": int(len(yv)), "n_pos": int(yv.sum()), "n_neg": int(len(yv) - yv.sum()),
           "n_missing": int((~ok).sum()),
           "prevalence": float(yv.mean()) if len(yv) else float("nan"),
           "auroc": auroc(yv, s) if len(yv) else float("nan"),
           "auprc": auprc(yv, s) if len(yv) else float("nan")}
    if n_boot and res["n_pos"] and res["n_neg"]:
        ci = bootstrap_ci(yv, s, n_boot, alpha, seed)
        res["auroc_ci"], res["auprc_ci"] = list(ci["auroc"]), list(ci["auprc"])
    else:
        res["auroc_ci"] = res["auprc_ci"] = [float("nan"), float("nan")]
    res["n_boot"] = int(n_boot)
    return res


def stratified(y: Sequence, score: Sequence, strata: Sequence, n_boot: int = 1000, seed: int = 0,
               min_n: int = 10) -> pd.DataFrame:
    """One :func:`evaluate` row per stratum (e.g. consequence class) plus ``all``.

    Strata with fewer than ``min_n`` labelled rows or one class get NaN metrics
    (still listed, with their counts).
    """
    yv, s = binary_labels(y), np.asarray(score, float)
    st = pd.Series(strata).astype("string").fillna("NA").to_numpy()
    rows = [{"stratum": "all", **_flat(evaluate(yv, s, n_boot, seed=seed))}]
    for g in sorted(set(st)):
        m = st == g
        r = evaluate(yv[m], s[m], n_boot if m.sum() >= min_n else 0, seed=seed)
        if r["n"] < min_n:
            r["auroc"] = r["auprc"] = float("nan")
        rows.append({"stratum": g, **_flat(r)})
    return pd.DataFrame(rows)


def _flat(r: dict) -> dict:
    out = {k: v for k, v in r.items() if not k.endswith("_ci")}
    for k in ("auroc", "auprc"):
        out[f"{k}_lo"], out[f"{k}_hi"] = r[f"{k}_ci"]
    return out


# ---------------------------------------------------------------- calibration
def reliability_table(y: Sequence, prob: Sequence, n_bins: int = 10) -> pd.DataFrame:
    """Equal-width reliability table on probabilities in [0, 1]:
    ``bin_lo, bin_hi, n, mean_pred, frac_pos`` (+ ECE in ``attrs["ece"]``, Brier in ``attrs["brier"]``)."""
    yv, p = binary_labels(y), np.asarray(prob, float)
    ok = np.isfinite(yv) & np.isfinite(p)
    yv, p = yv[ok], np.clip(p[ok], 0, 1)
    edges = np.linspace(0, 1, n_bins + 1)
    b = np.clip(np.digitize(p, edges[1:-1]), 0, n_bins - 1)
    rows = []
    for i in range(n_bins):
        m = b == i
        rows.append({"bin_lo": edges[i], "bin_hi": edges[i + 1], "n": int(m.sum()),
                     "mean_pred": float(p[m].mean()) if m.any() else np.nan,
                     "frac_pos": float(yv[m].mean()) if m.any() else np.nan})
    df = pd.DataFrame(rows)
    w = df["n"] / max(1, len(p))
    df.attrs["ece"] = float((w * (df["mean_pred"] - df["frac_pos"]).abs()).fillna(0).sum())
    df.attrs["brier"] = float(np.mean((p - yv) ** 2)) if len(p) else float("nan")
    return df


def fit_calibration(y: Sequence, score: Sequence, method: str = "platt") -> dict:
    """Fit a score -> probability map on held-out data, as a JSON-able dict for the card.

    ``platt``: ``p = sigmoid(a*score + b)``; ``isotonic``: monotone step map stored as
    thresholds ``x``/``y`` and applied by linear interpolation.
    """
    yv, s = binary_labels(y), np.asarray(score, float)
    ok = np.isfinite(yv) & np.isfinite(s)
    yv, s = yv[ok], s[ok]
    if len(np.unique(yv)) < 2:
        raise ValueError("calibration needs both classes in the calibration split")
    if method == "platt":
        from sklearn.linear_model import LogisticRegression

        lr = LogisticRegression(C=1e6, max_iter=1000).fit(s[:, None], yv.astype(int))
        return {"method": "platt", "a": float(lr.coef_[0, 0]), "b": float(lr.intercept_[0]), "n": int(len(s))}
    if method == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(s, yv)
        return {"method": "isotonic", "x": iso.X_thresholds_.tolist(), "y": iso.y_thresholds_.tolist(),
                "n": int(len(s))}
    raise ValueError(f"unknown calibration method {method!r}; use platt or isotonic")


def apply_calibration(cal: Mapping | None, score: np.ndarray) -> np.ndarray:
    """Apply a map from :func:`fit_calibration` (identity when ``cal`` is None)."""
    s = np.asarray(score, float)
    if not cal:
        return s
    if cal["method"] == "platt":
        return 1.0 / (1.0 + np.exp(-(cal["a"] * s + cal["b"])))
    if cal["method"] == "isotonic":
        out = np.interp(s, np.asarray(cal["x"]), np.asarray(cal["y"]))
        return np.where(np.isfinite(s), out, np.nan)
    raise ValueError(f"unknown calibration method {cal['method']!r}")


# ---------------------------------------------------------------------- plots
def roc_curve(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(fpr, tpr) at every distinct threshold."""
    order = np.argsort(-s, kind="mergesort")
    y, s = y[order], s[order]
    last = np.r_[s[1:] != s[:-1], True]
    tp, fp = np.cumsum(y)[last], np.cumsum(1 - y)[last]
    return np.r_[0, fp / max(fp[-1], 1)], np.r_[0, tp / max(tp[-1], 1)]


def plot_roc(curves: Mapping[str, tuple[Sequence, Sequence]], path: str | Path, title: str = "ROC") -> Path:
    """ROC curves ``{name: (y, score)}`` in one PNG, AUROC in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=120)
    for name, (y, s) in curves.items():
        yv, sv = binary_labels(y), np.asarray(s, float)
        ok = np.isfinite(yv) & np.isfinite(sv)
        if len(np.unique(yv[ok])) < 2:
            continue
        fpr, tpr = roc_curve(yv[ok], sv[ok])
        ax.plot(fpr, tpr, label=f"{name} (AUROC {auroc(yv[ok], sv[ok]):.3f}, n={ok.sum()})")
    ax.plot([0, 1], [0, 1], ls=":", c="grey")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=title)
    ax.legend(fontsize=7, loc="lower right")
    return _save(fig, path)


def _save(fig, path: str | Path) -> Path:
    """Write ``fig`` to ``path`` (folders created) and close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_calibration(tables: Mapping[str, pd.DataFrame], path: str | Path, title: str = "Calibration") -> Path:
    """Reliability diagrams ``{name: reliability_table(...)}`` in one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=120)
    for name, t in tables.items():
        t = t[t["n"] > 0]
        ax.plot(t["mean_pred"], t["frac_pos"], marker="o", label=f"{name} (ECE {t.attrs.get('ece', np.nan):.3f})")
    ax.plot([0, 1], [0, 1], ls=":", c="grey")
    ax.set(xlabel="mean predicted probability", ylabel="fraction positive", title=title, xlim=(0, 1), ylim=(0, 1))
    ax.legend(fontsize=7, loc="upper left")
    return _save(fig, path)
