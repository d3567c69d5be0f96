"""Cohort biomarkers: a samples x features table, per-feature ranking statistics and a linear probe.

The cohort line of the data flow (DESIGN.md): a feature matrix (methylation beta
values, or per-sample embeddings) and a sample sheet with a case/control column
become one AnnData with

``obs``  one row per sample (sample-sheet columns + ``label`` 1/0/NaN, ``status``, ``status_detail``),
``var``  one row per feature (``n_missing``, ``status``; after :func:`rank_features` the ranking
         statistics ``auroc, delta, mean_case, mean_control, n_case, n_control, pval, qval, rank``),
``X``    float32 values, NaN where missing,
``uns["biointerp"]`` provenance and, after ranking, ``test`` (the test used).

Nothing is dropped silently: sample-sheet rows without data, data columns without a
sample-sheet row, samples without a usable label and all-missing features stay in
the table with a ``status`` other than ``ok`` and are counted in ``uns["biointerp"]["counts"]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from biointerp.tables import file_fingerprint, provenance

SAMPLE_STATUS = ("ok", "no_label", "all_missing", "not_in_matrix", "not_in_sheet", "missing_file", "not_in_vcf",
                 "missing_covariate")
TESTS = {"wilcoxon": "Wilcoxon rank-sum / Mann-Whitney U (two-sided, asymptotic, tie-corrected; scipy.stats)",
         "ttest": "Welch t-test (two-sided; scipy.stats.ttest_ind, equal_var=False)"}


#: Values understood without --case/--control (the case/control subset of biointerp.probes.evaluate.LABEL_MAP;
#: importing biointerp.probes would pull in lightning just to read a table).
AUTO_LABELS = {"case": 1, "control": 0, "tumor": 1, "tumour": 1, "normal": 0, "1": 1, "0": 0, "1.0": 1, "0.0": 0,
               "true": 1, "false": 0, "yes": 1, "no": 0}


class CohortError(ValueError):
    """Bad cohort input (the message says what to do next)."""


# --------------------------------------------------------------------------------------- reading
def _sep(path: Path) -> str | None:
    name = path.name.lower().removesuffix(".gz").removesuffix(".bz2")
    if name.endswith((".tsv", ".txt", ".tab")):
        return "\t"
    if name.endswith(".csv"):
        return ","
    return None


def _read_table(path: Path, what: str, **kw) -> pd.DataFrame:
    if not path.exists():
        raise CohortError(f"{what} {path} not found")
    sep = _sep(path)
    try:
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path, sep=sep, engine="python" if sep is None else "c", **kw)
    except (ValueError, OSError, pd.errors.ParserError) as err:
        raise CohortError(f"cannot read {what} {path}: {err}") from err


def _label_values(values: pd.Series, case: Sequence[str] | None, control: Sequence[str] | None,
                  column: str) -> tuple[np.ndarray, list[str], list[str]]:
    """1.0 / 0.0 / NaN per sample, plus the case and control values used."""
    text = values.astype("string").str.strip()
    present = text.dropna()
    counts = present.value_counts()
    listing = ", ".join(f"{v!r} ({n})" for v, n in counts.items()) or "none"
    if not case and not control:
        y = text.str.lower().map(AUTO_LABELS).astype(float).to_numpy()
        if not (np.nansum(y == 1) and np.nansum(y == 0)):
            raise CohortError(f"cannot tell cases from controls in column {column!r} (values: {listing}); "
                              "name them with --case VALUE [--control VALUE]")
        cases = sorted(set(text[y == 1].dropna()))
        controls = sorted(set(text[y == 0].dropna()))
        return y, cases, controls
    case, control = list(case or []), list(control or [])
    for v in case + control:
        if v not in counts.index:
            raise CohortError(f"unknown case/control value {v!r} in column {column!r}; values present: {listing}")
    if set(case) & set(control):
        raise CohortError(f"{sorted(set(case) & set(control))} named both case and control")
    if not control:
        control = sorted(set(counts.index) - set(case))
    if not case:
        case = sorted(set(counts.index) - set(control))
    y = np.where(text.isin(case).fillna(False), 1.0, np.where(text.isin(control).fillna(False), 0.0, np.nan))
    if not ((y == 1).any() and (y == 0).any()):
        raise CohortError(f"column {column!r} gives no cases or no controls with case={case} control={control} "
                          f"(values present: {listing})")
    return y, case, control


def load_methylation(matrix_path: str | Path, samples_path: str | Path, label_column: str = "condition",
                     case: str | Sequence[str] | None = None, control: str | Sequence[str] | None = None,
                     sample_column: str | None = None, orientation: str = "auto") -> ad.AnnData:
    """Read a methylation (or any numeric feature) matrix and a sample sheet into one AnnData.

    Parameters
    ----------
    matrix_path
        TSV/CSV (optionally gzipped) or Parquet; first column = feature ids (e.g. ``cg…`` probes or
        ``chrom:pos``), one column per sample (the TCGA and ``biointerp synth cohort`` layout).
        Empty cells are missing values (kept as NaN).
    samples_path
        Sample sheet, one row per sample; the id column is ``sample_column`` (default: ``sample`` if
        present, else the first column).
    label_column
        Sample-sheet column holding the condition.
    case, control
        Value(s) of ``label_column`` for cases (label 1) and controls (label 0). With only ``case``,
        every other value is a control (and vice versa); with neither, tumor/normal, case/control,
        1/0 … are recognised.
    orientation
        ``"features_x_samples"``, ``"samples_x_features"`` or ``"auto"`` (the side whose ids match the
        sample sheet best).

    Returns
    -------
    AnnData ``n_samples x n_features``: obs = sample-sheet columns + ``label`` (1/0/NaN), ``status``
    (``ok``, ``no_label``, ``all_missing``, ``not_in_matrix``, ``not_in_sheet``), ``status_detail``;
    var = ``n_missing``, ``frac_missing``, ``status`` (``ok`` / ``all_missing``); X float32 with NaN;
    ``uns["biointerp"]`` = provenance, case/control values and ``counts``. Obs order: sample-sheet
    order, then data columns missing from the sheet.

    Raises
    ------
    CohortError
        Unreadable files, a missing column, an unknown case/control value, duplicate ids, or no
        sample id shared by the two files (the message gives how many matched).
    """
    matrix_path, samples_path = Path(matrix_path), Path(samples_path)
    if isinstance(case, str):
        case = [case]
    if isinstance(control, str):
        control = [control]
    header = _read_table(samples_path, "sample sheet", nrows=0) if samples_path.suffix != ".parquet" else None
    cols = list(header.columns) if header is not None else None
    if cols is not None:
        sid = sample_column or ("sample" if "sample" in cols else cols[0])
        if sid not in cols:
            raise CohortError(f"sample column {sid!r} not in {samples_path}; columns are {cols}")
        sheet = _read_table(samples_path, "sample sheet", dtype={sid: str})
    else:
        sheet = _read_table(samples_path, "sample sheet")
        sid = sample_column or ("sample" if "sample" in sheet.columns else sheet.columns[0])
    if sid not in sheet.columns:
        raise CohortError(f"sample column {sid!r} not in {samples_path}; columns are {list(sheet.columns)}")
    if label_column not in sheet.columns:
        raise CohortError(f"label column {label_column!r} not in {samples_path}; columns are "
                          f"{list(sheet.columns)} (choose one with --label-column)")
    sheet[sid] = sheet[sid].astype(str).str.strip()
    dup = sheet[sid][sheet[sid].duplicated()].unique()
    if len(dup):
        raise CohortError(f"{len(dup)} duplicate sample ids in {samples_path} (e.g. {list(dup[:3])}); "
                          "make them unique")

    if matrix_path.suffix == ".parquet":
        mat = _read_table(matrix_path, "matrix")
        mat = mat.set_index(mat.columns[0])
    else:
        mat = _read_table(matrix_path, "matrix", index_col=0)
    mat.index = mat.index.astype(str)
    mat.columns = mat.columns.astype(str).str.strip()
    ids = set(sheet[sid])
    if orientation == "auto":
        orientation = "samples_x_features" if len(ids & set(mat.index)) > len(ids & set(mat.columns)) \
            else "features_x_samples"
    if orientation == "samples_x_features":
        mat = mat.T
    elif orientation != "features_x_samples":
        raise CohortError(f"orientation must be auto, features_x_samples or samples_x_features, not {orientation!r}")
    for what, idx in (("feature", mat.index), ("sample", mat.columns)):
        d = idx[idx.duplicated()].unique()
        if len(d):
            raise CohortError(f"{len(d)} duplicate {what} ids in {matrix_path} (e.g. {list(d[:3])})")
    try:
        values = mat.apply(pd.to_numeric, errors="raise").to_numpy(dtype=np.float32).T  # samples x features
    except (ValueError, TypeError) as err:
        raise CohortError(f"{matrix_path} has non-numeric values ({err}); expected numbers or empty cells") from err

    matched = [s for s in sheet[sid] if s in set(mat.columns)]
    if not matched:
        raise CohortError(f"no sample id of {samples_path} ({len(ids)} ids, column {sid!r}, e.g. "
                          f"{sorted(ids)[:2]}) matches a sample id of {matrix_path} ({mat.shape[1]} samples, e.g. "
                          f"{list(mat.columns[:2])}): 0 matched; check --sample-column and that both files "
                          "name samples the same way")
    y, cases, controls = _label_values(sheet[label_column], case, control, label_column)

    extra = [s for s in mat.columns if s not in ids]
    order = list(sheet[sid]) + extra
    obs = sheet.set_index(sid).reindex(order)
    obs.index.name = "sample"
    obs["label"] = np.concatenate([y, np.full(len(extra), np.nan)])
    col_pos = {s: i for i, s in enumerate(mat.columns)}
    X = np.full((len(order), mat.shape[0]), np.nan, dtype=np.float32)
    rows = [i for i, s in enumerate(order) if s in col_pos]
    X[rows] = values[[col_pos[order[i]] for i in rows]]
    in_mat = np.array([s in col_pos for s in order])
    all_missing = in_mat & np.isnan(X).all(1)
    status = np.full(len(order), "ok", dtype=object)
    detail = np.full(len(order), "", dtype=object)
    lab_txt = obs[label_column].astype("string")
    nolab = ~np.isfinite(obs["label"].to_numpy())
    status[nolab] = "no_label"
    for i in np.flatnonzero(nolab):
        v = lab_txt.iloc[i]
        detail[i] = f"{label_column} missing" if pd.isna(v) else f"{label_column}={v!r} is neither case nor control"
    status[all_missing] = "all_missing"
    detail[all_missing] = "every feature missing"
    status[~in_mat] = "not_in_matrix"
    detail[~in_mat] = f"no column in {matrix_path.name}"
    is_extra = np.isin(np.array(order, dtype=object), np.array(extra, dtype=object))
    status[is_extra] = "not_in_sheet"
    detail[is_extra] = f"not in {samples_path.name}"
    obs["status"] = pd.Categorical(status, categories=SAMPLE_STATUS)
    obs["status_detail"] = detail.astype(str)
    for c in obs.columns:  # h5ad-friendly: text columns as strings
        if obs[c].dtype == object:
            obs[c] = obs[c].astype("string").fillna("NA").astype(str)

    n_missing = np.isnan(values).sum(0)  # over the matrix's own samples
    var = pd.DataFrame(index=pd.Index(mat.index, name=mat.index.name or "feature"))
    var["n_missing"] = n_missing.astype(np.int64)
    var["frac_missing"] = n_missing / max(1, values.shape[0])
    var["status"] = np.where(n_missing == values.shape[0], "all_missing", "ok")

    counts = {"samples_in_sheet": int(len(sheet)), "samples_in_matrix": int(mat.shape[1]),
              "matched": int(len(matched)), "not_in_matrix": int((status == "not_in_matrix").sum()),
              "not_in_sheet": int(len(extra)), "no_label": int((status == "no_label").sum()),
              "all_missing_samples": int(all_missing.sum()), "ok": int((status == "ok").sum()),
              "cases": int(((status == "ok") & (obs["label"].to_numpy() == 1)).sum()),
              "controls": int(((status == "ok") & (obs["label"].to_numpy() == 0)).sum()),
              "features": int(mat.shape[0]), "all_missing_features": int((var["status"] == "all_missing").sum()),
              "missing_values": int(n_missing.sum())}
    uns = {"biointerp": provenance(kind="cohort", matrix=str(matrix_path), samples=str(samples_path),
                                   matrix_sha256=file_fingerprint(matrix_path),
                                   samples_sha256=file_fingerprint(samples_path),
                                   label_column=label_column, sample_column=sid, case=list(cases),
                                   control=list(controls), orientation=orientation)}
    uns["biointerp"]["counts"] = counts
    return ad.AnnData(X=X, obs=obs, var=var, uns=uns)


def sample_report(adata: ad.AnnData) -> str:
    """One line accounting for every sample and feature (for logs and the CLI)."""
    c = adata.uns["biointerp"]["counts"]
    parts = [f"{c['matched']} of {c['samples_in_sheet']} sheet samples matched the matrix "
             f"({c['samples_in_matrix']} columns)",
             f"{c['ok']} usable: {c['cases']} cases / {c['controls']} controls"]
    for k in ("not_in_matrix", "not_in_sheet", "no_label", "all_missing_samples"):
        if c[k]:
            parts.append(f"{c[k]} {k.replace('_', ' ')} (kept, status {k.removesuffix('_samples')})")
    parts.append(f"{c['features']} features, {c['missing_values']} missing values"
                 + (f", {c['all_missing_features']} all-missing features (kept, status all_missing)"
                    if c["all_missing_features"] else ""))
    return "; ".join(parts)


# --------------------------------------------------------------------------------------- ranking
def _usable(adata: ad.AnnData) -> tuple[np.ndarray, np.ndarray]:
    y = adata.obs["label"].to_numpy(dtype=float)
    ok = (adata.obs["status"].astype(str).to_numpy() == "ok") & np.isfinite(y)
    return ok, y


def _mwu(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mann-Whitney U of ``a [F, n1]`` vs ``b [F, n0]`` per row, NaN-aware; (U1, p)."""
    from scipy import stats

    u = np.full(a.shape[0], np.nan)
    p = np.full(a.shape[0], np.nan)
    nan_rows = np.isnan(a).any(1) | np.isnan(b).any(1)
    full = ~nan_rows
    if full.any():  # vectorised over complete rows; scipy loops slice by slice once NaNs appear
        r = stats.mannwhitneyu(a[full], b[full], axis=1, alternative="two-sided", method="asymptotic")
        u[full], p[full] = r.statistic, r.pvalue
    for i in np.flatnonzero(nan_rows):
        x, z = a[i][~np.isnan(a[i])], b[i][~np.isnan(b[i])]
        if len(x) and len(z):
            r = stats.mannwhitneyu(x, z, alternative="two-sided", method="asymptotic")
            u[i], p[i] = r.statistic, r.pvalue
    return u, p


def rank_features(adata: ad.AnnData, test: str = "wilcoxon", min_per_group: int = 3,
                  copy: bool = False) -> ad.AnnData:
    """Rank features by how well they separate cases (label 1) from controls (label 0).

    Uses samples with ``status == "ok"`` and a 0/1 label; missing values are left out feature by
    feature (scanpy's ``rank_genes_groups`` does not accept NaN, hence scipy.stats).

    Parameters
    ----------
    adata
        From :func:`load_methylation` (or any AnnData with obs ``label`` and ``status``).
    test
        ``"wilcoxon"`` (Mann-Whitney U, default) or ``"ttest"`` (Welch).
    min_per_group
        Features with fewer non-missing values in either group get NaN statistics.
    copy
        Work on a copy instead of ``adata``.

    Returns
    -------
    The AnnData with var columns ``n_case, n_control, mean_case, mean_control, delta``
    (mean case − mean control, Δβ for methylation), ``auroc`` (P(case > control), ties ½; < 0.5 means
    lower in cases), ``direction`` (up/down in cases), ``pval``, ``qval`` (Benjamini–Hochberg over
    the tested features), ``rank`` (1 = best: smallest p, ties by ``|auroc − 0.5|``; 0 = not
    ranked) and ``uns["biointerp"]["test"]`` naming the test.
    """
    from scipy import stats

    if test not in TESTS:
        raise CohortError(f"unknown test {test!r}; choose one of {sorted(TESTS)}")
    adata = adata.copy() if copy else adata
    ok, y = _usable(adata)
    X = np.asarray(adata.X, dtype=np.float64)
    a, b = X[ok & (y == 1)].T, X[ok & (y == 0)].T  # features x samples
    if a.shape[1] == 0 or b.shape[1] == 0:
        raise CohortError(f"need cases and controls with status ok; have {a.shape[1]} cases, {b.shape[1]} controls")
    n1, n0 = np.isfinite(a).sum(1), np.isfinite(b).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        m1, m0 = np.nanmean(np.where(n1[:, None] > 0, a, 0), 1), np.nanmean(np.where(n0[:, None] > 0, b, 0), 1)
    m1[n1 == 0], m0[n0 == 0] = np.nan, np.nan
    u, p_mw = _mwu(a, b)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = u / (n1 * n0)
    if test == "wilcoxon":
        p = p_mw
    else:
        with np.errstate(invalid="ignore", divide="ignore"):
            p = np.asarray(stats.ttest_ind(a, b, axis=1, equal_var=False, nan_policy="omit").pvalue, float)
    tested = (n1 >= min_per_group) & (n0 >= min_per_group) & np.isfinite(p)
    for arr in (auc, p):
        arr[~tested] = np.nan
    q = np.full_like(p, np.nan)
    if tested.any():
        q[tested] = stats.false_discovery_control(p[tested], method="bh")
    order = np.lexsort((-np.abs(np.nan_to_num(auc, nan=0.5) - 0.5), np.where(tested, p, np.inf)))
    rank = np.zeros(len(p), dtype=np.int64)
    rank[order[: tested.sum()]] = np.arange(1, tested.sum() + 1)
    delta = m1 - m0
    var = adata.var
    var["n_case"], var["n_control"] = n1.astype(np.int64), n0.astype(np.int64)
    var["mean_case"], var["mean_control"], var["delta"] = m1, m0, delta
    var["auroc"] = auc
    var["direction"] = np.where(~tested, "NA", np.where(delta > 0, "up", "down"))
    var["pval"], var["qval"], var["rank"] = p, q, rank
    info = adata.uns.setdefault("biointerp", {})
    info["test"] = test
    info["test_description"] = TESTS[test]
    info["multiple_testing"] = "benjamini-hochberg"
    info["ranking"] = {"n_cases": int(a.shape[1]), "n_controls": int(b.shape[1]), "n_tested": int(tested.sum()),
                       "min_per_group": int(min_per_group), "n_q_below_0.05": int((q < 0.05).sum())}
    return adata


def top_features(adata: ad.AnnData, n: int = 20) -> pd.DataFrame:
    """The ``n`` best-ranked features (after :func:`rank_features`) as a DataFrame."""
    if "rank" not in adata.var:
        raise CohortError("no ranking in var; run rank_features first")
    cols = [c for c in ("rank", "auroc", "delta", "mean_case", "mean_control", "pval", "qval", "n_missing",
                        "probe_weight") if c in adata.var]
    v = adata.var[adata.var["rank"] > 0].sort_values("rank")
    return v[cols].head(n)


# --------------------------------------------------------------------------------------- probe
def stratified_split(y: np.ndarray, test_frac: float = 0.3, seed: int = 0) -> np.ndarray:
    """``"train"``/``"test"`` per row with both classes in the same proportion in each part."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    tr, te = train_test_split(idx, test_size=test_frac, stratify=y, random_state=seed)
    out = np.full(len(y), "train", dtype=object)
    out[te] = "test"
    return out


def biomarker_probe(adata: ad.AnnData, features: Sequence[str] | None = None, test_frac: float = 0.3,
                    l2: float = 1e-2, n_boot: int = 1000, seed: int = 0, store: bool = True) -> dict:
    """Fit an L2 logistic-regression probe on the features and evaluate it on a held-out split.

    The split is stratified by label (imbalanced cohorts keep their case/control ratio in train and
    test); missing values are imputed with the train means only; the probe is
    :func:`biointerp.probes.fit_linear` (standardisation fitted on train, ``l2`` on the standardised
    weights) and the test AUROC / AUPRC with percentile bootstrap CIs come from
    :func:`biointerp.probes.evaluate`.

    Parameters
    ----------
    features
        Feature ids to use (default: every feature with status ``ok`` that has a train value).
    test_frac
        Fraction of usable samples held out.
    store
        Also write ``obs["split"]``, ``obs["probe_score"]`` (logit), ``var["probe_weight"]`` and
        ``uns["biointerp"]["probe"]`` into ``adata``.

    Returns
    -------
    ``{"metrics": evaluate(...) dict on the test split (+ train_auroc, n_train, n_test, l2,
    n_features), "weights": DataFrame (feature, weight = standardised, weight_raw = per unit of the
    feature, train_mean, train_std) sorted by |weight|, "split": Series, "score": Series}``.
    """
    import torch

    from biointerp.probes import fit_linear
    from biointerp.probes.evaluate import evaluate
    from biointerp.probes.evaluate import auroc

    ok, y = _usable(adata)
    feats = list(adata.var_names[adata.var["status"].astype(str) == "ok"]) if features is None else list(features)
    missing = [f for f in feats if f not in adata.var_names]
    if missing:
        raise CohortError(f"{len(missing)} features not in the table (e.g. {missing[:3]})")
    rows = np.flatnonzero(ok)
    yu = y[rows].astype(int)
    if min(np.bincount(yu, minlength=2)) < 2:
        raise CohortError("need at least 2 usable cases and 2 controls for a held-out probe")
    try:
        split = stratified_split(yu, test_frac, seed)
    except ValueError as err:
        raise CohortError(f"cannot make a stratified {test_frac:g} held-out split of {len(yu)} samples "
                          f"({int(yu.sum())} cases): {err}; change --test-frac") from err
    X = np.asarray(adata[:, feats].X, dtype=np.float64)[rows]
    tr, te = split == "train", split == "test"
    keep = ~np.isnan(X[tr]).all(0)  # features never seen in train get no weight
    with np.errstate(invalid="ignore"):
        mu = np.where(keep, np.nanmean(np.where(keep[None, :], X[tr], 0.0), 0), 0.0)  # train means only
    Xi = np.where(np.isnan(X), mu[None, :], X)[:, keep]
    probe = fit_linear(torch.from_numpy(Xi[tr]).float(), torch.from_numpy(yu[tr]), l2=l2, method="lbfgs",
                       seed=seed)
    with torch.no_grad():
        score = probe(torch.from_numpy(Xi).float())[:, 0].double().numpy()
    metrics = evaluate(yu[te], score[te], n_boot=n_boot, seed=seed)
    metrics.update(train_auroc=auroc(yu[tr], score[tr]), n_train=int(tr.sum()), n_test=int(te.sum()), l2=l2,
                   n_features=int(keep.sum()), test_frac=test_frac, seed=seed, imputation="train mean",
                   model="LinearProbe (L2 logistic regression on standardised features)")
    w = probe.linear.weight[0].detach().double().numpy()
    std = probe.std.double().numpy()
    kept = np.array(feats, dtype=object)[keep]
    weights = pd.DataFrame({"feature": kept, "weight": w, "weight_raw": w / std,
                            "train_mean": probe.mean.double().numpy(), "train_std": std})
    weights = weights.iloc[np.argsort(-np.abs(w), kind="stable")].reset_index(drop=True)
    names = adata.obs_names[rows]
    split_s = pd.Series(split, index=names, name="split")
    score_s = pd.Series(score, index=names, name="probe_score")
    if store:
        adata.obs["split"] = pd.Series(split_s, dtype=object).reindex(adata.obs_names).fillna("none").astype(str)
        adata.obs["probe_score"] = score_s.reindex(adata.obs_names).to_numpy()
        adata.var["probe_weight"] = weights.set_index("feature")["weight"].reindex(adata.var_names).to_numpy()
        adata.uns.setdefault("biointerp", {})["probe"] = _h5_safe(metrics)
    return {"metrics": metrics, "weights": weights, "split": split_s, "score": score_s}


def _h5_safe(d: dict) -> dict:
    return {k: (v if v is not None else "none") for k, v in d.items()}


# --------------------------------------------------------------------------------------- plots
def volcano_plot(adata: ad.AnnData, path: str | Path, top: int = 10, q_threshold: float = 0.05) -> Path:
    """Δ (mean case − control) against −log10 q, the ``top`` features labelled; writes a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    v = adata.var[adata.var["rank"] > 0]
    q = v["qval"].clip(lower=1e-300)
    sig = v["qval"] < q_threshold
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.scatter(v["delta"][~sig], -np.log10(q[~sig]), s=6, c="0.6", label=f"q ≥ {q_threshold}")
    ax.scatter(v["delta"][sig], -np.log10(q[sig]), s=8, c="tab:red", label=f"q < {q_threshold}")
    for name, r in v.sort_values("rank").head(top).iterrows():
        ax.annotate(str(name), (r["delta"], -np.log10(max(r["qval"], 1e-300))), fontsize=6)
    ax.axhline(-np.log10(q_threshold), ls="--", c="0.4", lw=0.8)
    info = adata.uns.get("biointerp", {})
    ax.set_xlabel(f"mean difference ({'/'.join(info.get('case', ['case']))} − "
                  f"{'/'.join(info.get('control', ['control']))})")
    ax.set_ylabel("−log10 q (BH)")
    ax.set_title(f"{info.get('test', '')}: {int((v['qval'] < q_threshold).sum())} of {len(v)} features q < {q_threshold}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_biomarkers(adata: ad.AnnData, path: str | Path) -> Path:
    """Write the biomarker table as ``.h5ad``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    adata.write_h5ad(path)
    return path


# --------------------------------------------------------------------------------------- regions, tables, plots
def region_candidates(adata: ad.AnnData, q_threshold: float = 0.05) -> pd.DataFrame:
    """Ranked features mapped back to their genomic regions (features from sequence carry var ``region``).

    One row per region: ``best_rank`` (its best-ranked feature), ``min_q``, ``max_sep``
    (max ``|auroc - 0.5|``), ``n_features``, ``n_q_below`` (features with q < ``q_threshold``),
    ``top_feature``, sorted by ``best_rank`` (``region_rank`` 1 = best).
    """
    if "rank" not in adata.var:
        raise CohortError("no ranking in var; run rank_features first")
    if "region" not in adata.var:
        raise CohortError("features have no region (var 'region'); they do not come from sequence")
    v = adata.var[adata.var["rank"] > 0].copy()
    v["sep"] = (v["auroc"] - 0.5).abs()
    v["_q"] = v["qval"] < q_threshold
    cols = [c for c in ("chrom", "start", "end") if c in v]
    v["region"] = v["region"].astype(str)
    g = v.sort_values("rank").groupby("region", sort=False)
    out = g.agg(best_rank=("rank", "min"), min_q=("qval", "min"), max_sep=("sep", "max"),
                n_features=("rank", "size"), n_q_below=("_q", "sum"))
    out["top_feature"] = g.apply(lambda d: d.index[0], include_groups=False)
    for c in cols:
        out[c] = g[c].first()
    out = out.sort_values(["best_rank"])
    out.insert(0, "region_rank", np.arange(1, len(out) + 1))
    return out


def write_candidates(adata: ad.AnnData, out_dir: str | Path, top: int = 50) -> dict[str, Path]:
    """Write ``candidates.h5ad`` (the ranked table), ``candidates.tsv`` (features by rank) and, when
    features come from sequence, ``regions.tsv`` (:func:`region_candidates`)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"h5ad": write_biomarkers(adata, out / "candidates.h5ad"), "tsv": out / "candidates.tsv"}
    v = adata.var[adata.var["rank"] > 0].sort_values("rank")
    v.to_csv(paths["tsv"], sep="\t")
    if "region" in adata.var:
        paths["regions"] = out / "regions.tsv"
        region_candidates(adata).to_csv(paths["regions"], sep="\t")
    return paths


def _groups(adata: ad.AnnData) -> tuple[np.ndarray, np.ndarray, str, str]:
    ok, y = _usable(adata)
    info = adata.uns.get("biointerp", {})
    return ok, y, "/".join(info.get("case", ["case"])) or "case", "/".join(info.get("control", ["control"])) or "control"


def heatmap_plot(adata: ad.AnnData, path: str | Path, top: int = 30) -> Path:
    """Samples (grouped case | control) x the ``top`` ranked features, z-scored per feature; PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok, y, case, control = _groups(adata)
    feats = list(top_features(adata, top).index)
    order = np.concatenate([np.flatnonzero(ok & (y == 1)), np.flatnonzero(ok & (y == 0))])
    X = np.asarray(adata[order, feats].X, dtype=float)
    with np.errstate(invalid="ignore"):
        Z = (X - np.nanmean(X, 0)) / np.where(np.nanstd(X, 0) > 0, np.nanstd(X, 0), 1.0)
    fig, ax = plt.subplots(figsize=(max(5, 0.25 * len(feats) + 2), 5))
    im = ax.imshow(np.clip(Z, -3, 3), aspect="auto", cmap="RdBu_r", vmin=-3, vmax=3, interpolation="nearest")
    n1 = int((ok & (y == 1)).sum())
    ax.axhline(n1 - 0.5, c="k", lw=1)
    ax.set_yticks([n1 / 2, n1 + (len(order) - n1) / 2], [f"{case} ({n1})", f"{control} ({len(order) - n1})"])
    ax.set_xticks(range(len(feats)), [str(f) for f in feats], rotation=90, fontsize=5)
    fig.colorbar(im, ax=ax, label="z-score")
    ax.set_title(f"top {len(feats)} candidate features")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def distributions_plot(adata: ad.AnnData, path: str | Path, top: int = 8) -> Path:
    """Per-feature distributions by group (box + points) for the ``top`` ranked features; PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok, y, case, control = _groups(adata)
    feats = list(top_features(adata, top).index)
    ncol = min(4, len(feats))
    nrow = int(np.ceil(len(feats) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(3 * ncol, 2.6 * nrow), squeeze=False)
    rng = np.random.default_rng(0)
    for ax, f in zip(axes.ravel(), feats):
        x = np.asarray(adata[:, f].X, dtype=float).ravel()
        groups = [x[ok & (y == 1)], x[ok & (y == 0)]]
        groups = [g[np.isfinite(g)] for g in groups]
        ax.boxplot(groups, widths=0.5, showfliers=False)
        for i, g in enumerate(groups):
            ax.scatter(i + 1 + rng.uniform(-0.15, 0.15, len(g)), g, s=5, alpha=0.6)
        ax.set_xticks([1, 2], [case, control])
        r = adata.var.loc[f]
        ax.set_title(f"{f}\nAUROC {r['auroc']:.2f}, q {r['qval']:.1e}", fontsize=6)
    for ax in axes.ravel()[len(feats):]:
        ax.axis("off")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
