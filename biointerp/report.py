"""Pipeline reports: a Markdown page with PNG plots and a TSV summary.

- :func:`scoring_report` for a scores table: status counts, score
  distributions, AUROC with bootstrap CIs overall and per consequence class when
  labels exist.
- :func:`training_report` for probe training: probes vs zero-shot on the test
  split.

Orientation: a higher score means "more likely positive (damaging)". Zero-shot
``delta_ll`` (alt minus ref log-likelihood) is negated for ROC analysis, since
damaging variants lower the likelihood.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


#: Columns that are not variant-effect scores (per-allele likelihoods): left out of the report.
NOT_EFFECT_SCORES = ("ref_ll", "alt_ll")


def oriented(name: str, values: np.ndarray) -> np.ndarray:
    """Score oriented so that higher = more likely damaging (``delta_ll*`` negated)."""
    v = np.asarray(values, dtype=float)
    return -v if name.startswith("delta_ll") else v


def _labels(obs: pd.DataFrame) -> np.ndarray | None:
    if "label" not in obs.columns:
        return None
    from biointerp.probes.evaluate import binary_labels

    y = binary_labels(pd.to_numeric(obs["label"], errors="coerce")
                      if pd.api.types.is_numeric_dtype(obs["label"]) else obs["label"])
    return y if np.isfinite(y).any() and len(set(y[np.isfinite(y)])) == 2 else None


def _fmt(x, digits=3) -> str:
    return "NA" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{x:.{digits}f}"


def _md_table(df: pd.DataFrame) -> str:
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "| " + " | ".join("---" for _ in cols) + " |"]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(_fmt(v) if isinstance(v, float) else str(v) for v in row) + " |")
    return "\n".join(lines)


def scoring_report(adata, out_dir: str | Path, n_boot: int = 1000, title: str = "Variant scoring report") -> dict:
    """Write ``report.md``, ``summary.tsv`` (metric, value), ``scores.tsv`` (one row per
    score), ``status_counts.tsv``, ``per_consequence.tsv`` and PNG plots to ``out_dir``.

    Returns the summary as a dict (``n_variants``, ``status_counts``, per-score
    ``metrics``). Works with or without labels and with any score columns.
    """
    from biointerp.probes.evaluate import evaluate, roc_curve

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    obs = adata.obs
    keep = [j for j, n in enumerate(adata.var_names) if str(n) not in NOT_EFFECT_SCORES]
    X = np.asarray(adata.X, dtype=float)[:, keep]
    names = [str(adata.var_names[j]) for j in keep]
    status = obs["status"].astype(str).value_counts().rename_axis("status").reset_index(name="n")
    status.to_csv(out / "status_counts.tsv", sep="\t", index=False)
    figs: list[tuple[str, str]] = []

    fig, ax = plt.subplots(figsize=(6, 3))
    ax.barh(status["status"], status["n"], color="#4c72b0")
    ax.set_xlabel("variants")
    ax.set_title("Variant status")
    fig.tight_layout()
    fig.savefig(out / "status_counts.png", dpi=100)
    plt.close(fig)
    figs.append(("Variant status counts", "status_counts.png"))

    y = _labels(obs)
    rows = []
    if names:
        fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3), squeeze=False)
        for j, name in enumerate(names):
            v = X[:, j]
            ok = np.isfinite(v)
            ax = axes[0, j]
            if y is not None:
                for cls, color, lab in ((0.0, "#4c72b0", "negative"), (1.0, "#c44e52", "positive")):
                    m = ok & (y == cls)
                    if m.any():
                        ax.hist(v[m], bins=30, alpha=0.6, color=color, label=f"{lab} (n={m.sum()})")
                unl = ok & ~np.isfinite(y)
                if unl.any():
                    ax.hist(v[unl], bins=30, alpha=0.4, color="grey", label=f"unlabelled (n={unl.sum()})")
                ax.legend(fontsize=7)
            elif ok.any():
                ax.hist(v[ok], bins=30, color="#4c72b0")
            ax.set_title(name)
            ax.set_xlabel("score")
        fig.tight_layout()
        fig.savefig(out / "score_distributions.png", dpi=100)
        plt.close(fig)
        figs.append(("Score distributions", "score_distributions.png"))

    for j, name in enumerate(names):
        v = X[:, j]
        row = {"score": name, "n_scored": int(np.isfinite(v).sum()),
               "mean": float(np.nanmean(v)) if np.isfinite(v).any() else float("nan"),
               "median": float(np.nanmedian(v)) if np.isfinite(v).any() else float("nan")}
        if y is not None:
            r = evaluate(y, oriented(name, v), n_boot=n_boot)
            row.update(n_labelled=r["n"], auroc=r["auroc"], auroc_lo=r["auroc_ci"][0], auroc_hi=r["auroc_ci"][1],
                       auprc=r["auprc"])
        rows.append(row)
    metrics = pd.DataFrame(rows)
    metrics.to_csv(out / "scores.tsv", sep="\t", index=False)

    per_class = None
    if y is not None and names:
        main = names[0]
        s = oriented(main, X[:, 0])
        cons = (obs["consequence"].astype(str).replace("", "NA").to_numpy()
                if "consequence" in obs.columns else np.full(len(obs), "NA", dtype=object))
        per_class = per_class_metrics(y, s, cons, n_boot=n_boot)
        per_class.to_csv(out / "per_consequence.tsv", sep="\t", index=False)
        fig, ax = plt.subplots(figsize=(5.5, 5))
        m = np.isfinite(s) & np.isfinite(y)
        for row in per_class.itertuples():
            mc = _class_mask(row.stratum, row.comparison, y, cons) & m
            if not np.isfinite(row.auroc):
                continue
            fpr, tpr = roc_curve(y[mc], s[mc])
            lw, color = (2, "black") if row.stratum == "all" else (1, None)
            ax.plot(fpr, tpr, lw=lw, color=color, alpha=0.85, label=f"{row.stratum} ({row.auroc:.2f})")
        ax.plot([0, 1], [0, 1], ls="--", color="grey")
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.set_title(f"ROC of {main} by consequence class")
        ax.legend(fontsize=6)
        fig.tight_layout()
        fig.savefig(out / "roc_by_consequence.png", dpi=100)
        plt.close(fig)
        figs.append((f"ROC of {main} by consequence class", "roc_by_consequence.png"))

    md_cmp = ""
    if y is not None and names:
        from biointerp.probes.baselines import with_baselines
        from biointerp.probes.evaluate import comparison_markdown, comparison_tables

        split = obs["split"].astype(str).to_numpy() if "split" in obs.columns else None
        try:
            cmp = with_baselines(obs, y, {n: oriented(n, X[:, j]) for j, n in enumerate(names)},
                                 np.ones(len(obs), dtype=bool), None if split is None else split == "train",
                                 zero_shot=False, n_boot=n_boot)
            md_cmp = comparison_markdown(cmp, cmp["baselines_fitted"])
            comparison_tables(cmp)["long"].to_csv(out / "comparison.tsv", sep="\t", index=False)
        except ValueError as err:
            md_cmp = f"Baselines not computed: {err}.\n"

    summary = pd.DataFrame(
        [{"metric": "n_variants", "value": adata.n_obs}]
        + [{"metric": f"status.{r.status}", "value": int(r.n)} for r in status.itertuples()]
        + [{"metric": f"{r['score']}.{k}", "value": r[k]} for r in rows for k in r if k != "score"]
    )
    summary.to_csv(out / "summary.tsv", sep="\t", index=False)

    md = [f"# {title}", "", f"{adata.n_obs} input variants; "
          + ", ".join(f"{r.n} {r.status}" for r in status.itertuples()) + ".", "",
          "## Scores", "", _md_table(metrics) if len(metrics) else "No score columns.", ""]
    if y is None:
        md += ["No labels in the table: ROC analysis skipped.", ""]
    else:
        md += ["AUROC uses higher = damaging (`delta_ll` negated); 95% percentile bootstrap CIs.", ""]
    if md_cmp:
        md += ["## Every score beside the model-free baselines", "",
               "All labelled variants (probe scores here include their own training variants; the training "
               "report holds the held-out figures).", "", md_cmp, ""]
    if per_class is not None:
        md += ["## Per consequence class", "",
               "Classes holding both labels are scored within the class; classes of positives only "
               "against all negatives (comparison `vs_all_negatives`).", "", _md_table(per_class), ""]
    for cap, png in figs:
        md += [f"## {cap}", "", f"![{cap}]({png})", ""]
    (out / "report.md").write_text("\n".join(md))
    return {"n_variants": int(adata.n_obs), "status_counts": dict(zip(status["status"], status["n"].astype(int))),
            "metrics": rows}


def _class_mask(cls: str, comparison: str, y: np.ndarray, cons: np.ndarray) -> np.ndarray:
    if cls == "all":
        return np.ones(len(y), dtype=bool)
    if comparison == "within_class":
        return cons == cls
    return (cons == cls) | (y == 0)


def per_class_metrics(y: np.ndarray, score: np.ndarray, classes: np.ndarray, n_boot: int = 1000,
                      min_n: int = 5) -> pd.DataFrame:
    """AUROC (95% CI) overall and per consequence class.

    A class with both labels is evaluated within itself; a class of positives
    only against every negative variant (``vs_all_negatives``); a class of
    negatives only gets NaN. Classes with fewer than ``min_n`` labelled rows get NaN.
    """
    from biointerp.probes.evaluate import evaluate

    rows = []
    for cls in ["all", *sorted(set(classes) - {"NA"})]:
        in_cls = np.ones(len(y), dtype=bool) if cls == "all" else classes == cls
        yc = y[in_cls & np.isfinite(y)]
        comparison = "all" if cls == "all" else (
            "within_class" if len(set(yc)) == 2 else "vs_all_negatives" if len(yc) and yc.max() == 1 else "none")
        m = _class_mask(cls, comparison, y, classes)
        n_lab = int((in_cls & np.isfinite(y)).sum())
        if comparison == "none" or n_lab < min_n:
            rows.append({"stratum": cls, "comparison": comparison, "n": n_lab, "n_pos": int(np.nansum(yc)),
                         "auroc": np.nan, "auroc_lo": np.nan, "auroc_hi": np.nan})
            continue
        r = evaluate(y[m], score[m], n_boot=n_boot)
        rows.append({"stratum": cls, "comparison": comparison, "n": n_lab, "n_pos": int(np.nansum(yc)),
                     "auroc": r["auroc"], "auroc_lo": r["auroc_ci"][0], "auroc_hi": r["auroc_ci"][1]})
    return pd.DataFrame(rows)


def training_report(evals: Sequence[str | Path], labels: pd.DataFrame, out_dir: str | Path,
                    zeroshot=None, n_boot: int = 1000) -> pd.DataFrame:
    """Compare trained probes (evaluation JSONs of ``biointerp probe evaluate``) with
    zero-shot scores and the model-free baselines (fitted on the ``train`` split only)
    on the same test split; writes ``report.md``, ``summary.tsv``, ``comparison.tsv``,
    ``pairs.tsv`` (paired AUROC differences between the methods) and ``comparison.png``. Returns the summary table: one row per method (probes,
    zero-shot scores, baselines) with overall and within-variant-class AUROC [CI] and
    whether its interval clears the best baseline.
    """
    from biointerp.probes.baselines import with_baselines
    from biointerp.probes.evaluate import binary_labels, comparison_markdown, comparison_tables

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lab = labels.drop_duplicates("variant_id").set_index(labels.drop_duplicates("variant_id")["variant_id"].astype(str))
    split = lab["split"].astype(str) if "split" in lab.columns else pd.Series("test", index=lab.index)
    scores, kinds, rows_without = {}, {}, []
    for path in evals:
        r = json.loads(Path(path).read_text())
        name = f"probe:{Path(path).stem}"
        pred = r.get("predictions")
        if pred:
            first = next(k for k in pred if k != "variant_id")
            v = pd.Series(pred[first], index=[str(i) for i in pred["variant_id"]], dtype=float)
            scores[name], kinds[name] = v.reindex(lab.index).to_numpy(float), "model"
        else:  # an evaluation JSON without per-variant predictions: its own figures only
            m = r.get("metrics", r)
            rows_without.append({"method": name, "kind": "model", "n": m.get("n"), "auroc": m.get("auroc"),
                                 "auroc_lo": (m.get("auroc_ci") or [np.nan, np.nan])[0],
                                 "auroc_hi": (m.get("auroc_ci") or [np.nan, np.nan])[1], "auprc": m.get("auprc")})
    if zeroshot is not None:
        X = np.asarray(zeroshot.X, dtype=float)
        for j, name in enumerate(zeroshot.var_names):
            if str(name) in NOT_EFFECT_SCORES:
                continue
            v = pd.Series(oriented(str(name), X[:, j]), index=zeroshot.obs_names.astype(str))
            scores[f"zero-shot:{name}"] = v[~v.index.duplicated()].reindex(lab.index).to_numpy(float)
            kinds[f"zero-shot:{name}"] = "zero-shot"
    y = binary_labels(pd.to_numeric(lab["label"], errors="coerce")
                      if pd.api.types.is_numeric_dtype(lab["label"]) else lab["label"])
    cmp, md_cmp = None, ""
    try:
        cmp = with_baselines(lab, y, scores, (split == "test").to_numpy(), (split == "train").to_numpy(), kinds,
                             zero_shot=False, n_boot=n_boot)
        md_cmp = comparison_markdown(cmp, cmp["baselines_fitted"])
    except ValueError as err:
        md_cmp = f"Baselines not computed: {err}.\n"
    rows = []
    if cmp is not None and cmp.get("overall"):
        within = {r["score"]: r for r in cmp["within"] if r["by"] == cmp["headline"]}
        verd = {r["score"]: r for r in cmp["verdicts"] if r["basis"] == f"within:{cmp['headline']}"}
        verd_all = {r["score"]: r for r in cmp["verdicts"] if r["basis"] == "overall"}
        for r in cmp["overall"]:
            k, w = r["score"], within.get(r["score"], {})
            rows.append({"method": k, "kind": r["kind"], "n": r["n"], "auroc": r["auroc"], "auroc_lo": r["auroc_lo"],
                         "auroc_hi": r["auroc_hi"], "auprc": r["auprc"],
                         "auroc_within": w.get("auroc_within", np.nan), "within_lo": w.get("lo", np.nan),
                         "within_hi": w.get("hi", np.nan),
                         "carried_by_composition": w.get("carried_by_composition", False),
                         "better_than_baselines_within": verd[k]["better"] if k in verd else None,
                         "better_than_baselines_overall": verd_all[k]["better"] if k in verd_all else None})
        comparison_tables(cmp)["long"].to_csv(out / "comparison.tsv", sep="\t", index=False)
        pd.DataFrame(cmp["pairs"]).to_csv(out / "pairs.tsv", sep="\t", index=False)
    rows += rows_without
    table = pd.DataFrame(rows)
    table.to_csv(out / "summary.tsv", sep="\t", index=False)

    fig, ax = plt.subplots(figsize=(6, 0.45 * max(len(table), 1) + 1.2))
    if len(table):
        a = table["auroc"].astype(float).to_numpy()
        lo = np.nan_to_num(a - table["auroc_lo"].astype(float).to_numpy())
        hi = np.nan_to_num(table["auroc_hi"].astype(float).to_numpy() - a)
        colors = ["#999999" if k == "baseline" else "#4c72b0" for k in table["kind"]]
        ax.barh(table["method"], a, xerr=[lo, hi], color=colors, capsize=3, label="overall")
        if "auroc_within" in table:
            ax.scatter(table["auroc_within"].astype(float), table["method"], color="#c44e52", zorder=3,
                       label="within variant class")
        ax.legend(fontsize=7, loc="lower right")
    ax.axvline(0.5, ls="--", color="grey")
    ax.set_xlim(0, 1)
    ax.set_xlabel("AUROC on the test split (95% CI); grey: model-free baselines")
    fig.tight_layout()
    fig.savefig(out / "comparison.png", dpi=100)
    plt.close(fig)

    counts = lab["split"].astype(str).value_counts() if "split" in lab.columns else pd.Series(dtype=int)
    md = ["# Probe training report", "",
          f"{len(lab)} variants ({int(np.isfinite(y).sum())} labelled); split "
          + ", ".join(f"{k} {v}" for k, v in counts.items())
          + ". Probes are trained on `train` (early stopping on `val` when present) and every method "
          "is scored on the same `test` variants. Zero-shot `delta_ll` is negated (higher = damaging).", "",
          "## Test split: every score beside the model-free baselines", "", md_cmp, "",
          "![AUROC comparison](comparison.png)", ""]
    (out / "report.md").write_text("\n".join(md))
    return table
