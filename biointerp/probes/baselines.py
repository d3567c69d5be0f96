"""Model-free baselines every model score must beat.

A variant's class (SNV / insertion / deletion / MNV), its substitution type (the
12 ``ref>alt`` classes of an SNV; indels and MNVs keep their class), its
consequence class (when the table has a ``consequence`` column) and its indel
length say a lot about pathogenicity without any model: in ClinVar BRCA1/2 most
indels are pathogenic. Each baseline is fitted on the **training split only**:

- ``variant_class``, ``substitution``, ``consequence``, ``indel_length``: the
  pathogenic rate per category on the training rows (add-one smoothed; a
  category unseen in training gets the training prevalence);
- ``combined``: a small L2 logistic regression on the one-hot variant class,
  substitution type and consequence.

Without a training split the scores are cross-fitted (each row scored by
baselines fitted on the other folds), so no row ever scores itself.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

#: variant classes, in report order
VARIANT_CLASSES = ("snv", "insertion", "deletion", "mnv")
#: baseline names, in report order (``consequence`` only when the column exists)
BASELINES = ("variant_class", "substitution", "consequence", "indel_length", "combined")
#: baselines computed from the alleles alone (no annotation column)
ANNOTATION_FREE = ("variant_class", "substitution", "indel_length")
_LENGTH_BINS = ((1, "1"), (2, "2"), (3, "3"), (5, "4-5"), (10, "6-10"), (20, "11-20"))


def _length_bin(n: int) -> str:
    """Indel length bin (``0`` for SNVs/MNVs); in-frame (3k) lengths kept apart from frameshifts."""
    if n == 0:
        return "0"
    name = next((lab for hi, lab in _LENGTH_BINS if n <= hi), ">20")
    return f"{name}/{'3k' if n % 3 == 0 else 'not3k'}"


def _alleles(table: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    if {"ref", "alt"} <= set(table.columns):
        return table["ref"].astype(str).str.upper(), table["alt"].astype(str).str.upper()
    ids = pd.Series(table.index if "variant_id" not in table.columns else table["variant_id"], index=table.index)
    parts = ids.astype(str).str.split(":", expand=True)
    if parts.shape[1] < 4:
        raise ValueError("baselines need ref/alt columns or chrom:pos:ref:alt variant ids")
    return parts[2].str.upper(), parts[3].str.upper()


def variant_class(ref: pd.Series, alt: pd.Series) -> np.ndarray:
    """``snv`` / ``insertion`` / ``deletion`` / ``mnv`` from the allele lengths."""
    lr, la = ref.str.len().to_numpy(), alt.str.len().to_numpy()
    return np.where((lr == 1) & (la == 1), "snv",
                    np.where(lr > la, "deletion", np.where(lr < la, "insertion", "mnv"))).astype(object)


def variant_features(table: pd.DataFrame) -> pd.DataFrame:
    """Model-free features per row: ``variant_class``, ``substitution`` (``C>T``...; the
    variant class for non-SNVs), ``indel_length`` (a length bin, ``0`` for SNVs/MNVs,
    ``frameshift``-aware: ``3k`` lengths binned apart) and ``consequence`` when present."""
    ref, alt = _alleles(table)
    vc = variant_class(ref, alt)
    sub = np.where(vc == "snv", ref.to_numpy(dtype=object) + ">" + alt.to_numpy(dtype=object), vc).astype(object)
    n = np.abs(ref.str.len().to_numpy() - alt.str.len().to_numpy())
    length = np.array([_length_bin(k) for k in n], dtype=object)
    out = pd.DataFrame({"variant_class": vc, "substitution": sub, "indel_length": length,
                        "indel_bp": n}, index=table.index)
    if "consequence" in table.columns:
        c = table["consequence"].astype("string").fillna("NA").replace("", "NA").to_numpy(dtype=object)
        if (c != "NA").any():
            out["consequence"] = c
    return out


def baseline_names(features: pd.DataFrame) -> list[str]:
    """The baselines available for ``features`` (``consequence`` only with that column)."""
    return [b for b in BASELINES if b != "consequence" or "consequence" in features.columns]


class CategoryRate:
    """Pathogenic rate per category (add-one smoothed); unseen categories get the prevalence."""

    def fit(self, cats: np.ndarray, y: np.ndarray) -> "CategoryRate":
        df = pd.DataFrame({"c": cats, "y": y})
        self.prior = float(np.mean(y))
        g = df.groupby("c")["y"].agg(["sum", "count"])
        self.rate = ((g["sum"] + self.prior) / (g["count"] + 1.0)).to_dict()
        self.counts = g["count"].astype(int).to_dict()
        return self

    def predict(self, cats: np.ndarray) -> np.ndarray:
        return np.array([self.rate.get(c, self.prior) for c in cats], dtype=float)


class CombinedBaseline:
    """L2 logistic regression on one-hot variant class, substitution type (and consequence)."""

    columns = ("variant_class", "substitution", "consequence")

    def fit(self, feats: pd.DataFrame, y: np.ndarray) -> "CombinedBaseline":
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import OneHotEncoder

        self.cols = [c for c in self.columns if c in feats.columns]
        self.enc = OneHotEncoder(handle_unknown="ignore").fit(feats[self.cols].astype(str))
        X = self.enc.transform(feats[self.cols].astype(str))
        self.lr = LogisticRegression(C=1.0, max_iter=2000).fit(X, y.astype(int))
        return self

    def predict(self, feats: pd.DataFrame) -> np.ndarray:
        return self.lr.predict_proba(self.enc.transform(feats[self.cols].astype(str)))[:, 1]


def fit_baselines(features: pd.DataFrame, y: np.ndarray) -> dict:
    """Fit every available baseline on labelled training rows (``y`` 0/1; NaN rows skipped)."""
    y = np.asarray(y, float)
    ok = np.isfinite(y)
    f, yy = features[ok], y[ok]
    if len(np.unique(yy)) < 2:
        raise ValueError("baselines need both labels among the training rows")
    fitted: dict = {}
    for name in baseline_names(features):
        fitted[name] = CombinedBaseline().fit(f, yy) if name == "combined" \
            else CategoryRate().fit(f[name].to_numpy(), yy)
    return fitted


def baseline_scores(fitted: Mapping, features: pd.DataFrame) -> pd.DataFrame:
    """Score rows with fitted baselines: one column per baseline (P(positive))."""
    cols = {}
    for name, m in fitted.items():
        cols[name] = m.predict(features) if name == "combined" else m.predict(features[name].to_numpy())
    return pd.DataFrame(cols, index=features.index)


def cross_fitted_scores(features: pd.DataFrame, y: np.ndarray, n_folds: int = 5, seed: int = 0) -> pd.DataFrame:
    """Baseline scores when no training split exists: each fold is scored by baselines
    fitted on the other folds (rows without a label get the average of the folds)."""
    y = np.asarray(y, float)
    n = len(features)
    rng = np.random.default_rng(seed)
    fold = rng.integers(0, n_folds, size=n)
    out = pd.DataFrame(np.nan, index=features.index, columns=baseline_names(features))
    unl = ~np.isfinite(y)
    acc = np.zeros((int(unl.sum()), out.shape[1]))
    used = 0
    for k in range(n_folds):
        tr = (fold != k) & np.isfinite(y)
        if len(np.unique(y[tr])) < 2:
            continue
        fitted = fit_baselines(features[tr], y[tr])
        te = (fold == k) & np.isfinite(y)
        if te.any():
            out.loc[out.index[te], :] = baseline_scores(fitted, features[te])[out.columns].to_numpy()
        if unl.any():
            acc += baseline_scores(fitted, features[unl])[out.columns].to_numpy()
            used += 1
    if unl.any() and used:
        out.loc[out.index[unl], :] = acc / used
    return out


def baselines_for(table: pd.DataFrame, y: np.ndarray, train_mask: np.ndarray | None, eval_mask: np.ndarray,
                  seed: int = 0) -> tuple[pd.DataFrame, str]:
    """Baseline scores for the rows of ``eval_mask`` and how they were fitted.

    With a ``train_mask`` holding both labels: fitted on those rows only
    (``"fitted on the training split (n=...)"``); otherwise cross-fitted over the
    evaluated rows.
    """
    feats = variant_features(table)
    y = np.asarray(y, float)
    if train_mask is not None:
        tr = np.asarray(train_mask, bool) & np.isfinite(y)
        if len(np.unique(y[tr])) == 2:
            fitted = fit_baselines(feats[tr], y[tr])
            return (baseline_scores(fitted, feats[eval_mask]),
                    f"fitted on the training split only (n={int(tr.sum())})")
    ev = np.asarray(eval_mask, bool)
    return (cross_fitted_scores(feats[ev], y[ev], seed=seed),
            "cross-fitted (5 folds) on the evaluated rows: no training split was given")


def with_baselines(table: pd.DataFrame, y: np.ndarray, scores: Mapping[str, np.ndarray], eval_mask: np.ndarray,
                   train_mask: np.ndarray | None = None, kinds: Mapping[str, str] | None = None,
                   strata_column: str | None = "consequence", zero_shot: bool = True, n_boot: int = 1000,
                   seed: int = 0) -> dict:
    """Model scores on the ``eval_mask`` rows of ``table`` beside the model-free baselines
    (fitted on ``train_mask`` rows), the zero-shot score (``-delta_ll`` when the table has
    ``delta_ll``) and per-stratum figures; see :func:`~biointerp.probes.evaluate.compare_scores`.

    ``scores`` hold one value per row of ``table`` (higher = more likely positive).
    Strata: variant class (the headline), consequence and ``strata_column`` when present.
    """
    from biointerp.probes.evaluate import compare_scores

    ev = np.asarray(eval_mask, bool)
    y = np.asarray(y, float)
    base, how = baselines_for(table, y, train_mask, ev, seed=seed)
    feats = variant_features(table[ev])
    kinds = dict(kinds or {})
    cols = {k: np.asarray(v, float)[ev] for k, v in scores.items()}
    for k in cols:
        kinds.setdefault(k, "zero-shot" if k.lstrip("-").startswith("delta_ll") else "model")
    if zero_shot and "delta_ll" in table.columns and "-delta_ll" not in cols:
        cols["-delta_ll"] = -pd.to_numeric(table["delta_ll"], errors="coerce").to_numpy(float)[ev]
        kinds["-delta_ll"] = "zero-shot"
    for k in base.columns:
        cols[f"baseline:{k}"] = base[k].to_numpy(float)
        kinds[f"baseline:{k}"] = "baseline"
    strata = {"variant_class": feats["variant_class"].to_numpy()}
    if "consequence" in feats.columns:
        strata["consequence"] = feats["consequence"].to_numpy()
    if strata_column and strata_column in table.columns and strata_column not in strata:
        extra = table.loc[ev, strata_column].astype("string").fillna("NA").to_numpy(dtype=object)
        if not (pd.Series(extra).str.lower().to_numpy() == strata["variant_class"]).all():  # not a copy
            strata[strata_column] = extra
    # the baselines that read only the alleles (no annotation column): a second reference when the
    # consequence class is present, since it can define the label (the synthetic demo's does)
    sets = {"best annotation-free baseline": [f"baseline:{k}" for k in ANNOTATION_FREE if k in base.columns]} \
        if "consequence" in base.columns else None
    cmp = compare_scores(y[ev], cols, kinds, strata, headline="variant_class", n_boot=n_boot, seed=seed,
                         baseline_sets=sets)
    cmp["baselines_fitted"] = how
    return cmp
