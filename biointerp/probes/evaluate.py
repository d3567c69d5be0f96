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


# ------------------------------------------------- scores beside their baselines
def _stratified_indices(groups: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap row indices ``[n_boot, n]``: each stratum resampled within itself (its size kept)."""
    cols = []
    for g in np.unique(groups):
        members = np.flatnonzero(groups == g)
        cols.append(members[rng.integers(0, len(members), size=(n_boot, len(members)))])
    return np.concatenate(cols, axis=1) if cols else np.zeros((n_boot, 0), dtype=int)


def _ci(vals: np.ndarray, alpha: float) -> tuple[float, float]:
    v = vals[np.isfinite(vals)]
    return (float(np.quantile(v, alpha / 2)), float(np.quantile(v, 1 - alpha / 2))) if len(v) else (np.nan, np.nan)


def _metrics_batch(y: np.ndarray, S: np.ndarray, idx: np.ndarray, chunk: int = 250) -> tuple[np.ndarray, np.ndarray]:
    """AUROC and AUPRC ``[n_boot, m]`` of each score row of ``S [m, n]`` on resamples ``idx``."""
    B = idx.shape[0]
    auc, ap = np.full((B, len(S)), np.nan), np.full((B, len(S)), np.nan)
    for j, s in enumerate(S):
        for lo in range(0, B, chunk):
            ii = idx[lo:lo + chunk]
            auc[lo:lo + chunk, j] = _rank_auc_batch(y[ii], s[ii])
            ap[lo:lo + chunk, j] = _ap_batch(y[ii], s[ii])
    return auc, ap


def compare_scores(y: Sequence, scores: Mapping[str, Sequence], kinds: Mapping[str, str],
                   strata: Mapping[str, Sequence] | None = None, headline: str | None = None,
                   n_boot: int = 1000, alpha: float = 0.05, seed: int = 0, min_n: int = 10,
                   min_class: int = 5, baseline_sets: Mapping[str, Sequence[str]] | None = None) -> dict:
    """Every score beside the model-free baselines, overall and per stratum, with paired bootstrap CIs.

    Parameters
    ----------
    y
        Labels (anything :func:`binary_labels` reads).
    scores
        ``{name: score}`` (higher = more likely positive), model scores and baselines alike.
    kinds
        ``{name: "model" | "zero-shot" | "baseline"}``; "baseline" marks the model-free scores
        a model score must beat.
    strata
        ``{column: per-row stratum}`` (e.g. ``variant_class``, ``consequence``).
    headline
        The strata column whose size-weighted mean of per-stratum AUROCs is the
        headline ("within-stratum" AUROC); default: the first of ``strata``.
    n_boot, alpha, seed
        Percentile bootstrap, shared by all scores so differences are paired. Overall
        figures resample rows keeping the numbers of positives and negatives; per-stratum
        and within-stratum figures keep them per stratum (stratified by stratum and label).
    min_n, min_class
        Strata with fewer labelled rows, or fewer than ``min_class`` of either class
        (one benign variant among 160 makes an AUROC of 0 or 1 by itself), are listed
        without metrics and left out of the within-stratum summary.
    baseline_sets
        ``{label: [baseline names]}``: besides the best of all baselines, each score is
        also compared with the best baseline of each set (e.g. the baselines that do not
        read an annotation column).

    Returns
    -------
    A JSON-able dict: ``n, n_pos, n_neg, n_dropped`` (rows left out because a label or
    any score is missing), ``overall``, ``strata``, ``within`` and ``verdicts`` (lists of
    row dicts). A within row's ``carried_by_composition`` is True when the overall AUROC
    exceeds every within-stratum AUROC of that score. A verdict's ``better`` is True only
    where the bootstrap interval of (score - best baseline) lies above 0. ``pairs``: the
    paired bootstrap interval of the AUROC difference ``a - b`` (same resamples for both)
    for every pair of non-baseline scores and for each non-baseline score against the
    best baseline (and the best of each ``baseline_sets`` entry), overall and within
    strata; ``separated`` is True where that interval excludes 0.
    """
    names = list(scores)
    yv = binary_labels(y)
    S = np.vstack([np.asarray(scores[k], float) for k in names]) if names else np.zeros((0, len(yv)))
    ok = np.isfinite(yv) & np.isfinite(S).all(0)
    dropped = {k: int((np.isfinite(yv) & ~np.isfinite(S[j])).sum()) for j, k in enumerate(names)}
    yv, S = yv[ok], S[:, ok]
    st = {k: pd.Series(v).astype("string").fillna("NA").to_numpy(dtype=object)[ok] for k, v in (strata or {}).items()}
    headline = headline if headline in st else next(iter(st), None)
    rng = np.random.default_rng(seed)
    res = {"n": int(len(yv)), "n_pos": int(yv.sum()), "n_neg": int(len(yv) - yv.sum()),
           "n_dropped": int((~ok).sum() - (~np.isfinite(binary_labels(y))).sum()), "n_missing_per_score": dropped,
           "n_boot": int(n_boot), "alpha": alpha, "headline": headline,
           "kinds": {k: kinds.get(k, "model") for k in names}, "overall": [], "strata": [], "within": [],
           "verdicts": [], "pairs": []}
    if len(yv) == 0 or len(np.unique(yv)) < 2 or not names:
        return res
    point_auc = np.array([auroc(yv, s) for s in S])
    point_ap = np.array([auprc(yv, s) for s in S])
    # overall: resamples keep the numbers of positives and negatives (not the strata: a score that is
    # constant within strata must keep the uncertainty of the strata's label rates)
    idx = _stratified_indices(yv, n_boot, rng) if n_boot else np.zeros((0, len(yv)), dtype=int)
    boots = {"overall": _metrics_batch(yv, S, idx)}
    for by in ([headline] if headline else []) + [k for k in st if k != headline]:
        groups = st[by]
        cells = np.array([f"{g}\t{int(c)}" for g, c in zip(groups, yv)], dtype=object)  # stratum x label
        idx = _stratified_indices(cells, n_boot, rng) if n_boot else np.zeros((0, len(yv)), dtype=int)
        g_auc, g_w, g_boot = [], [], []
        for g in sorted(set(groups)):
            m = np.flatnonzero(groups == g)
            yg = yv[m]
            row0 = {"by": by, "stratum": str(g), "n": int(len(m)), "n_pos": int(yg.sum())}
            if len(m) < min_n or min(yg.sum(), len(yg) - yg.sum()) < min_class:
                for j, k in enumerate(names):
                    res["strata"].append({**row0, "score": k, "kind": res["kinds"][k], "auroc": np.nan,
                                          "auroc_lo": np.nan, "auroc_hi": np.nan, "auprc": np.nan,
                                          "auprc_lo": np.nan, "auprc_hi": np.nan})
                continue
            # the stratum's own resamples: its block of the stratified indices
            sub = idx[:, np.isin(idx[0], m)] if n_boot else idx
            a_b, p_b = _metrics_batch(yv, S, sub) if n_boot else (np.zeros((0, len(S))), np.zeros((0, len(S))))
            a_pt = np.array([auroc(yg, s[m]) for s in S])
            for j, k in enumerate(names):
                lo, hi = _ci(a_b[:, j], alpha) if n_boot else (np.nan, np.nan)
                plo, phi = _ci(p_b[:, j], alpha) if n_boot else (np.nan, np.nan)
                res["strata"].append({**row0, "score": k, "kind": res["kinds"][k], "auroc": float(a_pt[j]),
                                      "auroc_lo": lo, "auroc_hi": hi, "auprc": auprc(yg, S[j, m]),
                                      "auprc_lo": plo, "auprc_hi": phi})
            g_auc.append(a_pt)
            g_w.append(len(m))
            g_boot.append(a_b)
        if not g_auc:
            continue
        w = np.asarray(g_w, float)
        within = (np.vstack(g_auc) * w[:, None]).sum(0) / w.sum()
        if n_boot:
            gb = np.stack(g_boot)  # [G, B, m]
            wb = np.where(np.isfinite(gb), w[:, None, None], 0.0)
            within_b = np.nansum(gb * wb, 0) / np.maximum(wb.sum(0), 1e-12)
        else:
            within_b = np.zeros((0, len(S)))
        boots[f"within:{by}"] = (within, within_b)
        for j, k in enumerate(names):
            lo, hi = _ci(within_b[:, j], alpha) if n_boot else (np.nan, np.nan)
            res["within"].append({"by": by, "score": k, "kind": res["kinds"][k], "auroc_within": float(within[j]),
                                  "lo": lo, "hi": hi, "n_strata": len(g_w), "n_used": int(w.sum()),
                                  "overall": float(point_auc[j]), "max_stratum": float(np.vstack(g_auc)[:, j].max()),
                                  "carried_by_composition": bool(point_auc[j] > np.vstack(g_auc)[:, j].max())})
    a_b, p_b = boots["overall"]
    for j, k in enumerate(names):
        lo, hi = _ci(a_b[:, j], alpha) if n_boot else (np.nan, np.nan)
        plo, phi = _ci(p_b[:, j], alpha) if n_boot else (np.nan, np.nan)
        res["overall"].append({"score": k, "kind": res["kinds"][k], "n": int(len(yv)), "auroc": float(point_auc[j]),
                               "auroc_lo": lo, "auroc_hi": hi, "auprc": float(point_ap[j]), "auprc_lo": plo,
                               "auprc_hi": phi})
    base = [j for j, k in enumerate(names) if res["kinds"][k] == "baseline"]
    bases = [("overall", point_auc, a_b)] + [(k, v[0], v[1]) for k, v in boots.items() if k.startswith("within:")]
    for j, k in enumerate(names):
        if res["kinds"][k] == "baseline" or not base:
            continue
        for basis, pt, bt in bases:
            b = base[int(np.argmax(pt[base]))]
            d = bt[:, j] - bt[:, b] if n_boot else np.zeros(0)
            lo, hi = _ci(d, alpha) if n_boot else (np.nan, np.nan)
            res["verdicts"].append({"score": k, "basis": basis, "best_baseline": names[b],
                                    "baseline_auroc": float(pt[b]), "auroc": float(pt[j]),
                                    "delta": float(pt[j] - pt[b]), "delta_lo": lo, "delta_hi": hi,
                                    "better": bool(np.isfinite(lo) and lo > 0)})
    res["pairs"] = _paired_differences(names, res["kinds"], bases, baseline_sets, alpha)
    return res


def _paired_differences(names: Sequence[str], kinds: Mapping[str, str], bases: Sequence[tuple],
                        baseline_sets: Mapping[str, Sequence[str]] | None, alpha: float) -> list[dict]:
    """Rows of ``a - b`` AUROC differences with paired bootstrap intervals (see :func:`compare_scores`).

    ``bases``: ``(basis, point AUROC [m], bootstrap AUROC [B, m])`` per basis, all scores
    on the same resamples."""
    scored = [j for j, k in enumerate(names) if kinds[k] != "baseline"]
    base = [j for j, k in enumerate(names) if kinds[k] == "baseline"]
    sets = {"best baseline": base}
    for label, members in (baseline_sets or {}).items():
        js = [j for j, k in enumerate(names) if k in set(members) and kinds[k] == "baseline"]
        if js and set(js) != set(base):
            sets[label] = js
    rows = []
    for basis, pt, bt in bases:
        comps = [(a, b, "pair") for i, a in enumerate(scored) for b in scored[i + 1:]]
        for label, js in sets.items():
            if js:
                b = js[int(np.argmax(pt[js]))]
                comps += [(a, b, label) for a in scored]
        for a, b, vs in comps:
            d = bt[:, a] - bt[:, b] if len(bt) else np.zeros(0)
            lo, hi = _ci(d, alpha) if len(d) else (np.nan, np.nan)
            sep = bool(np.isfinite(lo) and (lo > 0 or hi < 0))
            rows.append({"basis": basis, "a": names[a], "b": names[b], "comparison": vs,
                         "auroc_a": float(pt[a]), "auroc_b": float(pt[b]), "delta": float(pt[a] - pt[b]),
                         "delta_lo": lo, "delta_hi": hi, "separated": sep,
                         "favours": (names[a] if lo > 0 else names[b]) if sep else ""})
    return rows


def auroc_difference(y: Sequence, score_a: Sequence, score_b: Sequence, n_boot: int = 1000,
                     alpha: float = 0.05, seed: int = 0) -> dict:
    """AUROC(a) − AUROC(b) on the same rows with its paired percentile bootstrap interval.

    Both scores are evaluated on the same resamples (keeping the numbers of positives
    and negatives), so the interval reflects the difference, not two separate
    intervals. Rows where a label or either score is missing are left out.
    Returns ``{"n", "auroc_a", "auroc_b", "delta", "delta_lo", "delta_hi", "separated"}``
    (``separated``: the interval excludes 0).
    """
    cmp = compare_scores(y, {"a": score_a, "b": score_b}, {"a": "model", "b": "model"}, n_boot=n_boot,
                         alpha=alpha, seed=seed)
    if not cmp["pairs"]:
        raise ValueError("AUROC difference needs both classes among rows with both scores")
    r = cmp["pairs"][0]
    return {"n": cmp["n"], **{k: r[k] for k in ("auroc_a", "auroc_b", "delta", "delta_lo", "delta_hi",
                                                  "separated")}}


def _ci_text(x: float, lo: float, hi: float) -> str:
    if x is None or not np.isfinite(x):
        return "NA"
    return f"{x:.3f} [{lo:.3f}, {hi:.3f}]" if np.isfinite(lo) else f"{x:.3f}"


def comparison_tables(cmp: Mapping) -> dict[str, pd.DataFrame]:
    """Plain tables from :func:`compare_scores`: ``headline`` (one row per score), ``strata``
    (score x stratum AUROC [CI]), ``strata_auprc`` (the same for AUPRC), ``pairs`` (paired AUROC differences) and ``long`` (every
    figure, for a TSV)."""
    names = list(cmp.get("kinds", {}))
    hl = cmp.get("headline")
    within = {(r["by"], r["score"]): r for r in cmp.get("within", [])}
    verd = {(r["score"], r["basis"]): r for r in cmp.get("verdicts", [])}
    rows = []
    for r in cmp.get("overall", []):
        k = r["score"]
        w = within.get((hl, k))
        row = {"score": k, "kind": r["kind"]}
        if w:
            row[f"AUROC within {hl} (headline)"] = _ci_text(w["auroc_within"], w["lo"], w["hi"])
        row["AUROC overall"] = _ci_text(r["auroc"], r["auroc_lo"], r["auroc_hi"])
        row["AUPRC overall"] = _ci_text(r["auprc"], r["auprc_lo"], r["auprc_hi"])
        for basis in ([f"within:{hl}"] if w else []) + ["overall"]:
            v = verd.get((k, basis))
            if v:
                tag = basis.split(":")[0]
                row[f"vs best baseline ({tag})"] = (f"{v['delta']:+.3f} [{v['delta_lo']:+.3f}, {v['delta_hi']:+.3f}] "
                                                    f"vs {v['best_baseline']}" if np.isfinite(v["delta_lo"])
                                                    else f"{v['delta']:+.3f} vs {v['best_baseline']}")
                row[f"better ({tag})"] = "yes" if v["better"] else "no"
        if w is not None:
            row["note"] = "overall carried by stratum composition" if w["carried_by_composition"] else ""
        rows.append(row)
    head = pd.DataFrame(rows)
    st = pd.DataFrame(cmp.get("strata", []))
    wide = {m: pd.DataFrame() for m in ("auroc", "auprc")}
    if len(st):
        st["col"] = [f"{b}={s} (n={n}, {p} pos)" for b, s, n, p in zip(st["by"], st["stratum"], st["n"], st["n_pos"])]
        for m in wide:
            st["cell"] = [_ci_text(a, lo, hi) for a, lo, hi in zip(st[m], st[f"{m}_lo"], st[f"{m}_hi"])]
            w = st.pivot_table(index="score", columns="col", values="cell", aggfunc="first", sort=False)
            w = w.reindex([n for n in names if n in w.index]).reset_index()
            w.columns.name = None
            wide[m] = w
    long = pd.concat([pd.DataFrame(cmp.get("overall", [])).assign(by="all", stratum="all"),
                      pd.DataFrame(cmp.get("strata", []))], ignore_index=True) if cmp.get("overall") else pd.DataFrame()
    return {"headline": head, "strata": wide["auroc"], "strata_auprc": wide["auprc"], "pairs": pairs_table(cmp),
            "long": long}


def pairs_table(cmp: Mapping, bases: Sequence[str] | None = None) -> pd.DataFrame:
    """The paired differences of :func:`compare_scores` as a readable table (one row per
    pair and basis; ``bases`` keeps only those bases, e.g. ``["within:variant_class"]``)."""
    rows = []
    for r in cmp.get("pairs", []):
        if bases is not None and r["basis"] not in bases:
            continue
        basis = r["basis"].replace("within:", "within ")
        ci = (f"{r['delta']:+.3f} [{r['delta_lo']:+.3f}, {r['delta_hi']:+.3f}]" if np.isfinite(r["delta_lo"])
              else f"{r['delta']:+.3f}")
        rows.append({"basis": basis, "A": r["a"], "B": r["b"], "B is": r["comparison"],
                     "AUROC A - B [95% CI]": ci,
                     "separated": (f"yes ({r['favours']} higher)" if r["separated"] else "no")})
    return pd.DataFrame(rows)


def comparison_markdown(cmp: Mapping, fitted: str = "") -> str:
    """Markdown section for a report: the headline table, the per-stratum table and how to read them."""
    if not cmp.get("overall"):
        return "No comparison: the evaluated rows hold one class only or no scores.\n"
    t = comparison_tables(cmp)
    hl = cmp.get("headline")
    lines = [f"{cmp['n']} labelled rows ({cmp['n_pos']} positive / {cmp['n_neg']} negative)"
             + (f"; {cmp['n_dropped']} left out for a missing score" if cmp.get("n_dropped") else "") + ". "
             f"Baselines (no model): {fitted or 'see kinds'}. 95% percentile bootstrap CIs ({cmp['n_boot']} "
             "resamples keeping the numbers of positives and negatives, overall and per stratum; shared by all "
             "scores so differences are paired).", ""]
    if hl:
        lines += [f"Headline: the within-{hl} AUROC, the mean of per-stratum AUROCs weighted by stratum size. "
                  "A score is called better only where the interval of its difference from the best baseline "
                  "lies above 0. An overall AUROC above every per-stratum AUROC is flagged: the overall figure is "
                  "then carried by how the strata differ in label rate, not by ranking within them.", ""]
    lines += [_md(t["headline"]), ""]
    if len(t["pairs"]):
        lines += ["Paired differences: AUROC(A) − AUROC(B) with a 95% interval from the same resamples for "
                  "both scores (the proper test of whether two methods differ; two separate intervals can "
                  "overlap while the difference's interval excludes 0, or the reverse). Separated = the "
                  "interval excludes 0.", "", _md(t["pairs"]), ""]
    if len(t["strata"]):
        wide = t["strata"]
        empty = [c for c in wide.columns[1:] if (wide[c].astype(str) == "NA").all()]
        if len(empty) < len(wide.columns) - 1:
            lines += ["AUROC [95% CI] per stratum (NA: under 10 rows or under 5 of either class; left out of the "
                      "within-stratum summary):", "", _md(wide.drop(columns=empty)), ""]
            pr = t["strata_auprc"]
            lines += ["AUPRC [95% CI] per stratum (same strata and resamples; compare with the stratum's positive "
                      "fraction, the AUPRC of a random score):", "",
                      _md(pr.drop(columns=[c for c in empty if c in pr.columns])), ""]
        if empty:
            lines += ["Strata without metrics for any score (under 10 rows or under 5 of either class): "
                      + ", ".join(empty) + ".", ""]
    return "\n".join(lines)


def _md(df: pd.DataFrame) -> str:
    cols = [str(c) for c in df.columns]
    out = ["| " + " | ".join(cols) + " |", "| " + " | ".join("---" for _ in cols) + " |"]
    for row in df.itertuples(index=False):
        out.append("| " + " | ".join("NA" if (isinstance(v, float) and not np.isfinite(v)) else str(v)
                                     for v in row) + " |")
    return "\n".join(out)
