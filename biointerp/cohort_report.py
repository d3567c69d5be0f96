"""Markdown report of a cohort run (rule ``cohort_report``): sample accounting, exclusions and their
reasons, missing values and how they were handled, candidate features and regions, probe metrics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd


def _table(df: pd.DataFrame) -> str:
    cols = [str(c) for c in df.columns]
    out = ["| " + " | ".join([df.index.name or ""] + cols) + " |", "|" + "---|" * (len(cols) + 1)]
    for idx, row in df.iterrows():
        cells = [f"{v:.3g}" if isinstance(v, (float, np.floating)) else str(v) for v in row]
        out.append("| " + " | ".join([str(idx)] + cells) + " |")
    return "\n".join(out)


def cohort_report(features: str | Path, candidates: str | Path, probe_metrics: str | Path | None = None,
                  seq_dir: str | Path | None = None, top: int = 20) -> str:
    """The report text (see the module doc)."""
    import anndata as ad

    a = ad.read_h5ad(features, backed="r")
    info = dict(a.uns.get("biointerp", {}))
    obs = a.obs
    lines = ["# Cohort biomarkers report", ""]
    st = obs["status"].astype(str).value_counts()
    ok = obs["status"].astype(str) == "ok"
    lab = obs["label"].to_numpy(dtype=float)
    lines += ["## Samples", "",
              f"{len(obs)} samples in the table; {int(ok.sum())} usable ({int((ok & (lab == 1)).sum())} cases "
              f"{info.get('case', '')}, {int((ok & (lab == 0)).sum())} controls {info.get('control', '')}).", ""]
    lines.append(_table(st.rename("samples").to_frame().rename_axis("status")))
    bad = obs[~ok]
    if len(bad):
        lines += ["", "Excluded samples (kept in every table with their status, not used):", ""]
        det = bad.groupby([bad["status"].astype(str), bad["status_detail"].astype(str)]).size().rename("samples")
        lines.append(_table(det.reset_index().set_index("status")))
    if seq_dir is not None:
        rep = json.loads((Path(seq_dir) / "report.json").read_text())
        c = rep.get("counts", {})
        lines += ["", "## Sequences", "",
                  f"{c.get('regions')} regions; {c.get('sequences')} per-sample sequences, {c.get('unique_sequences')} "
                  f"distinct (source: {rep.get('source')})."]
        if c.get("record_status"):
            lines += ["", "Per-sample status of data records (VCF records / methylation calls) that were not a plain "
                      "no-op:", "", _table(pd.Series(c["record_status"], name="n").to_frame().rename_axis("status"))]
        for k in ("calls_imputed", "calls_not_cpg", "calls_low_coverage", "vcf_records_in_regions"):
            if k in c:
                lines.append(f"- {k.replace('_', ' ')}: {c[k]}")
    X = np.asarray(a.X[:], dtype=float)
    n_missing = int(np.isnan(X[ok.to_numpy()]).sum())
    var = a.var
    lines += ["", "## Features and missing values", "",
              f"{a.n_vars} features; {n_missing} missing values among the usable samples "
              f"({n_missing / max(1, X[ok.to_numpy()].size):.3%} of cells)"
              + (f"; {int((var['status'].astype(str) != 'ok').sum())} features not usable "
                 f"({var['status'].astype(str).value_counts().to_dict()})" if "status" in var else "") + ".",
              "Handling: ranking leaves missing values out feature by feature (n_case / n_control per feature); "
              "the probe imputes them with training-fold means (never with test samples).", ""]
    if "n_missing" in var:
        nm = var["n_missing"].to_numpy()
        lines.append(f"Features with any missing value: {int((nm > 0).sum())}; most missing in one feature: "
                     f"{int(nm.max()) if len(nm) else 0}.")
    cand = Path(candidates)
    tsv = pd.read_csv(cand / "candidates.tsv", sep="\t", index_col=0)
    if (cand / "candidates.h5ad").exists():  # the ranking's own provenance (test, adjustment)
        info = dict(ad.read_h5ad(cand / "candidates.h5ad", backed="r").uns.get("biointerp", {}))
    lines += ["", "## Candidate features", "", f"Test: {info.get('test_description', info.get('test', 'wilcoxon'))}; "
              "q-values: Benjamini-Hochberg. "
              + (f"Covariates regressed out before ranking: {info['adjusted_for']}." if info.get("adjusted_for") else ""),
              "", f"{int((tsv['qval'] < 0.05).sum())} of {len(tsv)} tested features with q < 0.05.", ""]
    cols = [c for c in ("rank", "auroc", "delta", "pval", "qval", "n_missing", "region") if c in tsv]
    lines.append(_table(tsv[cols].head(top)))
    if (cand / "regions.tsv").exists():
        reg = pd.read_csv(cand / "regions.tsv", sep="\t", index_col=0)
        lines += ["", "## Candidate regions", "", _table(reg.drop(columns=["top_feature"], errors="ignore").head(top))]
    lines += ["", "Plots: `volcano.png`, `heatmap.png`, `distributions.png` in the candidates folder."]
    if probe_metrics:
        m = json.loads(Path(probe_metrics).read_text())
        lines += ["", "## Probe (cross-validated)", "",
                  f"{m['k']}-fold stratified CV, class-balanced L2 logistic regression (l2={m['l2']}), "
                  f"{m['n_features']} features, {m['n_samples']} samples ({m['n_cases']} cases / {m['n_controls']} "
                  f"controls); covariates {m.get('covariates') or 'none'} ({m.get('covariate_mode')}).", "",
                  f"- out-of-fold AUROC {m['auroc']:.3f} (95% CI {m['auroc_ci'][0]:.3f}-{m['auroc_ci'][1]:.3f}, "
                  f"{m['n_boot']} bootstraps); AUPRC {m['auprc']:.3f}",
                  f"- label permutations: {m['n_perm']}, mean AUROC {m['perm_auroc_mean']:.3f}, p = {m['perm_p']:.3g}",
                  f"- per-fold AUROC: {', '.join(f'{x:.3f}' for x in m['fold_auroc'])}"]
        if "covariates_only_auroc" in m:
            lines.append(f"- covariates alone: CV AUROC {m['covariates_only_auroc']:.3f}")
    return "\n".join(lines) + "\n"
