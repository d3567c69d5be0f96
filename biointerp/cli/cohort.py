"""``biointerp cohort``: candidate biomarkers from a sample x feature cohort table."""

from __future__ import annotations

import json

import click


@click.group(name="cohort")
def cohort() -> None:
    """Cohorts: samples x features (methylation beta values, embeddings) -> ranked candidate biomarkers."""


@cohort.command("biomarkers")
@click.option("--matrix", required=True, type=click.Path(dir_okay=False),
              help="Feature matrix (TSV/CSV[.gz] or Parquet): first column feature ids, one column per sample.")
@click.option("--samples", required=True, type=click.Path(dir_okay=False),
              help="Sample sheet (TSV/CSV): one row per sample, id column `sample` (or --sample-column).")
@click.option("--label-column", default="condition", show_default=True, help="Sample-sheet column with the condition.")
@click.option("--case", "case", multiple=True, help="Value(s) of the label column for cases (repeatable).")
@click.option("--control", "control", multiple=True,
              help="Value(s) for controls (repeatable; default: every other value).")
@click.option("--sample-column", default=None, help="Sample-id column (default: `sample`, else the first column).")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Output biomarkers table (.h5ad).")
@click.option("--top", type=click.IntRange(1, 100_000), default=20, show_default=True, help="Features to print.")
@click.option("--plot", type=click.Path(dir_okay=False), default=None, help="Write a volcano plot (PNG).")
@click.option("--test", type=click.Choice(["wilcoxon", "ttest"]), default="wilcoxon", show_default=True,
              help="Per-feature test (Mann-Whitney U or Welch t); q-values by Benjamini-Hochberg.")
@click.option("--min-per-group", type=click.IntRange(1, None), default=3, show_default=True,
              help="Fewer non-missing values in a group: the feature is not tested.")
@click.option("--test-frac", type=click.FloatRange(0.05, 0.9), default=0.3, show_default=True,
              help="Held-out fraction (stratified by label) for the probe.")
@click.option("--l2", type=click.FloatRange(0, None), default=1e-2, show_default=True,
              help="L2 penalty of the logistic-regression probe (standardised features).")
@click.option("--n-boot", type=click.IntRange(0, None), default=1000, show_default=True, help="Bootstrap resamples.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--no-probe", is_flag=True, help="Rank features only (no probe).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary instead of tables.")
def biomarkers(matrix, samples, label_column, case, control, sample_column, out, top, plot, test, min_per_group,
               test_frac, l2, n_boot, seed, no_probe, as_json) -> None:
    """Rank features separating cases from controls and fit a held-out linear probe.

    Example (TCGA colon methylation):

      biointerp cohort biomarkers --matrix tcga_coad_methylation_beta.tsv.gz
      --samples tcga_coad_samples.tsv --label-column condition --case tumor
      --control normal --out biomarkers.h5ad --top 20 --plot volcano.png

    Every sample of either file stays in the output with a status (ok, no_label,
    all_missing, not_in_matrix, not_in_sheet); missing values stay NaN and are
    counted per feature (var n_missing).
    """
    import numpy as np

    from biointerp.cohort import (CohortError, biomarker_probe, load_methylation, rank_features, sample_report,
                                  top_features, volcano_plot, write_biomarkers)

    try:
        adata = load_methylation(matrix, samples, label_column, case=list(case) or None,
                                 control=list(control) or None, sample_column=sample_column)
        info = adata.uns["biointerp"]
        c = info["counts"]
        if not as_json:
            click.echo(sample_report(adata))
        if c["matched"] < c["samples_in_sheet"] or c["not_in_sheet"]:
            click.echo(f"warning: sample ids differ between files: {c['matched']} matched, "
                       f"{c['not_in_matrix']} sheet samples without data, {c['not_in_sheet']} matrix samples "
                       "without a sheet row (kept with that status, not used)", err=True)
        rank_features(adata, test=test, min_per_group=min_per_group)
        result = None
        if not no_probe:
            result = biomarker_probe(adata, test_frac=test_frac, l2=l2, n_boot=n_boot, seed=seed)
    except CohortError as err:
        raise click.ClickException(str(err)) from err
    write_biomarkers(adata, out)
    if plot:
        volcano_plot(adata, plot, top=min(top, 8))
    table = top_features(adata, top)
    rk = info["ranking"]
    if as_json:
        summary = {"out": out, "counts": c, "case": info["case"], "control": info["control"], "test": test,
                   "n_tested": rk["n_tested"], "n_q_below_0.05": rk["n_q_below_0.05"],
                   "top": table.reset_index().to_dict(orient="records"),
                   "probe": None if result is None else result["metrics"]}
        click.echo(json.dumps(summary, indent=2, default=float))
        return
    click.echo(f"{info['test_description']}: {info['case']} ({rk['n_cases']}) vs {info['control']} "
               f"({rk['n_controls']}); {rk['n_tested']} features tested, {rk['n_q_below_0.05']} with q < 0.05")
    fmt = {"auroc": "{:.3f}".format, "delta": "{:+.3f}".format, "mean_case": "{:.3f}".format,
           "mean_control": "{:.3f}".format, "pval": "{:.2e}".format, "qval": "{:.2e}".format,
           "probe_weight": "{:+.3f}".format}
    shown = table.copy()
    for col, f in fmt.items():
        if col in shown:
            shown[col] = [("nan" if not np.isfinite(v) else f(v)) for v in shown[col]]
    click.echo(shown.to_string())
    if result is not None:
        m = result["metrics"]
        lo, hi = m["auroc_ci"]
        click.echo(f"probe (L2 logistic regression, {m['n_features']} features, l2={m['l2']:g}): held-out AUROC "
                   f"{m['auroc']:.3f} (95% CI {lo:.3f}-{hi:.3f}, {m['n_boot']} bootstraps) on {m['n_test']} samples "
                   f"({m['n_pos']} cases / {m['n_neg']} controls); AUPRC {m['auprc']:.3f}; "
                   f"train AUROC {m['train_auroc']:.3f}")
        w = result["weights"].head(5)
        click.echo("largest probe weights: " + ", ".join(f"{f} {x:+.3f}" for f, x in zip(w["feature"], w["weight"])))
    click.echo(f"wrote {out}" + (f" and {plot}" if plot else ""))
