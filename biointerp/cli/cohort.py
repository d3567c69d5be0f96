"""``biointerp cohort``: candidate biomarkers from a sample x feature cohort table."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.group(name="cohort")
def cohort() -> None:
    """Cohorts: samples x features (methylation beta values, embeddings) -> ranked candidate biomarkers."""


@cohort.command("biomarkers")
@click.option("--matrix", default=None, type=click.Path(dir_okay=False),
              help="Feature matrix (TSV/CSV[.gz] or Parquet): first column feature ids, one column per sample.")
@click.option("--samples", default=None, type=click.Path(dir_okay=False),
              help="Sample sheet (TSV/CSV): one row per sample, id column `sample` (or --sample-column).")
@click.option("--features", default=None, type=click.Path(dir_okay=False),
              help="Or: a samples x features table (.h5ad) from `cohort embed` (labels already in obs).")
@click.option("--adjust", "adjust", multiple=True,
              help="Regress this sample covariate out of every feature before ranking (repeatable).")
@click.option("--out-dir", default=None, type=click.Path(file_okay=False),
              help="Write candidates.h5ad/.tsv, regions.tsv (sequence features) and volcano, heatmap and "
                   "distribution plots here.")
@click.option("--label-column", default="condition", show_default=True, help="Sample-sheet column with the condition.")
@click.option("--case", "case", multiple=True, help="Value(s) of the label column for cases (repeatable).")
@click.option("--control", "control", multiple=True,
              help="Value(s) for controls (repeatable; default: every other value).")
@click.option("--sample-column", default=None, help="Sample-id column (default: `sample`, else the first column).")
@click.option("--out", default=None, type=click.Path(dir_okay=False), help="Output biomarkers table (.h5ad).")
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
def biomarkers(matrix, samples, features, adjust, out_dir, label_column, case, control, sample_column, out, top, plot,
               test, min_per_group, test_frac, l2, n_boot, seed, no_probe, as_json) -> None:
    """Rank features separating cases from controls and fit a held-out linear probe.

    Example (TCGA colon methylation):

      biointerp cohort biomarkers --matrix tcga_coad_methylation_beta.tsv.gz
      --samples tcga_coad_samples.tsv --label-column condition --case tumor
      --control normal --out biomarkers.h5ad --top 20 --plot volcano.png

    Every sample of either file stays in the output with a status (ok, no_label,
    all_missing, not_in_matrix, not_in_sheet); missing values stay NaN and are
    counted per feature (var n_missing).

    Model features: --features features.h5ad (from `cohort embed`) instead of
    --matrix/--samples; features are mapped back to their regions (regions.tsv).
    """
    import numpy as np

    from biointerp.cohort import (CohortError, biomarker_probe, load_methylation, rank_features, sample_report,
                                  top_features, volcano_plot, write_biomarkers)

    if out is None and out_dir is None:
        raise click.UsageError("give --out FILE.h5ad and/or --out-dir DIR")
    if (features is None) == (matrix is None):
        raise click.UsageError("give either --features (from `cohort embed`) or --matrix with --samples")
    if matrix is not None and samples is None:
        raise click.UsageError("--matrix needs --samples (the sample sheet)")
    try:
        if features is not None:
            import anndata as ad

            if not Path(features).exists():
                raise CohortError(f"--features {features} not found")
            adata = ad.read_h5ad(features)
            info = adata.uns["biointerp"]
            c = {"matched": adata.n_obs, "samples_in_sheet": adata.n_obs, "not_in_sheet": 0}
            if not as_json:
                k = info.get("counts", {})
                click.echo(f"{adata.n_obs} samples ({k.get('ok')} usable: {k.get('cases')} cases / "
                           f"{k.get('controls')} controls; {k.get('sample_status')}), {adata.n_vars} features")
        else:
            adata = load_methylation(matrix, samples, label_column, case=list(case) or None,
                                     control=list(control) or None, sample_column=sample_column)
            info = adata.uns["biointerp"]
            c = info["counts"]
            if not as_json:
                click.echo(sample_report(adata))
        if adjust:
            from biointerp.cohort_probe import adjust_covariates

            adata = adjust_covariates(adata, list(adjust))
            info = adata.uns["biointerp"]
        if features is None and (c["matched"] < c["samples_in_sheet"] or c["not_in_sheet"]):
            click.echo(f"warning: sample ids differ between files: {c['matched']} matched, "
                       f"{c['not_in_matrix']} sheet samples without data, {c['not_in_sheet']} matrix samples "
                       "without a sheet row (kept with that status, not used)", err=True)
        rank_features(adata, test=test, min_per_group=min_per_group)
        result = None
        if not no_probe:
            result = biomarker_probe(adata, test_frac=test_frac, l2=l2, n_boot=n_boot, seed=seed)
    except CohortError as err:
        raise click.ClickException(str(err)) from err
    if out:
        write_biomarkers(adata, out)
    if plot:
        volcano_plot(adata, plot, top=min(top, 8))
    if out_dir:
        from biointerp.cohort import distributions_plot, heatmap_plot, write_candidates

        paths = write_candidates(adata, out_dir)
        volcano_plot(adata, Path(out_dir) / "volcano.png", top=min(top, 8))
        heatmap_plot(adata, Path(out_dir) / "heatmap.png", top=min(top, 40))
        distributions_plot(adata, Path(out_dir) / "distributions.png", top=min(top, 8))
        if "regions" in paths and not as_json:
            from biointerp.cohort import region_candidates

            click.echo("regions by best feature rank:")
            click.echo(region_candidates(adata).head(top).drop(columns=["top_feature"]).to_string())
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
    click.echo("wrote " + ", ".join(str(p) for p in (out, plot, out_dir) if p))


# ----------------------------------------------------------------------------------- cohort from sequence
def _fail(err: Exception):
    raise click.ClickException(str(err)) from err


@cohort.command("simulate")
@click.option("--kind", type=click.Choice(["vcf", "methylation"]), required=True,
              help="A genotype cohort (multi-sample VCF) or a methylation cohort (beta matrix).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--cases", type=click.IntRange(2), default=30, show_default=True)
@click.option("--controls", type=click.IntRange(2), default=30, show_default=True)
@click.option("--regions", "n_regions", type=click.IntRange(2), default=12, show_default=True)
@click.option("--causal", type=click.IntRange(1), default=2, show_default=True,
              help="Planted regions (VCF: case-enriched alleles; methylation: DMR islands).")
@click.option("--confounded", type=click.IntRange(0), default=2, show_default=True,
              help="Regions driven by the `batch` confounder (more cases in batch B).")
@click.option("--region-len", type=click.IntRange(50), default=600, show_default=True, help="VCF regions (bp).")
@click.option("--unphased-frac", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="VCF: fraction of samples written with unphased genotypes.")
@click.option("--preset", type=click.Choice(["demo", "tiny", "default"]), default="demo", show_default=True,
              help="Synthetic genome (demo + --genome-seed 0 = the demo model's training genome).")
@click.option("--genome-seed", type=int, default=0, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def simulate_cmd(kind, out, cases, controls, n_regions, causal, confounded, region_len, unphased_frac, preset,
                 genome_seed, seed) -> None:
    """A cohort with planted truth on a synthetic genome (files for `cohort sequences`; truth.tsv)."""
    from biointerp.cohort_sim import simulate_methylation_cohort, simulate_vcf_cohort

    try:
        if kind == "vcf":
            paths = simulate_vcf_cohort(out, cases, controls, n_regions, region_len, causal, confounded,
                                        unphased_frac=unphased_frac, preset=preset, genome_seed=genome_seed, seed=seed)
        else:
            paths = simulate_methylation_cohort(out, cases, controls, n_regions, causal, confounded, preset=preset,
                                                genome_seed=genome_seed, seed=seed)
    except ValueError as err:
        _fail(err)
    for k, p in paths.items():
        click.echo(f"{k}\t{p}")


@cohort.command("sequences")
@click.option("--samples", required=True, type=click.Path(dir_okay=False),
              help="Sample sheet (TSV/CSV): sample id, label column, covariates, per-sample paths.")
@click.option("--regions", required=True, help="Regions: a BED file, a TSV (chrom,start,end 1-based) or chrom:start-end.")
@click.option("--fasta", required=True, type=click.Path(dir_okay=False), help="Reference FASTA.")
@click.option("--vcf", default=None, type=click.Path(dir_okay=False), help="Multi-sample VCF (bgzipped + indexed).")
@click.option("--beta", default=None, type=click.Path(dir_okay=False),
              help="CpG x sample beta matrix with coordinates (chrom:pos ids or chrom,pos columns).")
@click.option("--bedmethyl-column", default=None, help="Sample-sheet column with per-sample bedMethyl paths.")
@click.option("--label-column", default="condition", show_default=True)
@click.option("--case", "case", multiple=True, help="Label value(s) for cases (repeatable).")
@click.option("--control", "control", multiple=True, help="Label value(s) for controls (repeatable).")
@click.option("--sample-column", default=None, help="Sample id column (default: `sample`, else the first).")
@click.option("--covariate", "covariates", multiple=True, help="Covariate column kept for probes (repeatable).")
@click.option("--path-column", "path_columns", multiple=True,
              help="Sheet column of per-sample files that must exist (repeatable; relative to the sheet); a row "
                   "whose file is missing is excluded with status missing_file.")
@click.option("--unphased", type=click.Choice(["consensus", "error"]), default="consensus", show_default=True,
              help="Unphased heterozygous genotypes: alt allele on both sequences (counted), or stop.")
@click.option("--pass-only", is_flag=True, help="Do not apply records whose FILTER is not PASS (counted).")
@click.option("--threshold", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="Methylation: beta >= threshold = methylated.")
@click.option("--encoding", "encodings", multiple=True, type=click.Choice(["extended", "bisulfite"]),
              help="Methylation encodings (default both).")
@click.option("--missing", type=click.Choice(["mean", "reference"]), default="mean", show_default=True,
              help="Methylation: CpGs without a call take the cohort mean beta, or stay reference C.")
@click.option("--bisulfite-cpg-only", is_flag=True, help="Bisulfite encoding: convert CpG Cs only.")
@click.option("--min-coverage", type=click.IntRange(0), default=5, show_default=True, help="bedMethyl coverage.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder (a sequence set).")
def sequences_cmd(samples, regions, fasta, vcf, beta, bedmethyl_column, label_column, case, control, sample_column,
                  covariates, path_columns, unphased, pass_only, threshold, encodings, missing, bisulfite_cpg_only, min_coverage,
                  out) -> None:
    """Per-sample sequences over regions: haplotypes from a VCF, or methylation-encoded sequences.

    Example: biointerp cohort sequences --samples samples.tsv --vcf cohort.vcf.gz
    --fasta genome.fa --regions regions.bed --covariate batch --out seqs/

    Samples missing from the data, without a label or with a missing file keep
    their row with a status; every VCF record that is not applied has a
    per-sample status in records.parquet; counts go to report.json.
    """
    from biointerp.cohort import CohortError
    from biointerp.cohort_seq import (methylation_sequences, read_beta_matrix, read_regions, read_sample_sheet,
                                      vcf_sequences)
    from biointerp.genome import GenomeError

    given = [x for x in (vcf, beta, bedmethyl_column) if x]
    if len(given) != 1:
        raise click.UsageError("give exactly one of --vcf, --beta or --bedmethyl-column")
    try:
        sheet = read_sample_sheet(samples, label_column, list(case) or None, list(control) or None, sample_column,
                                  covariates, list(dict.fromkeys([*path_columns, *([bedmethyl_column] if
                                                                                  bedmethyl_column else [])])))
        reg = read_regions(regions)
        if vcf:
            ss = vcf_sequences(vcf, fasta, reg, sheet, unphased=unphased, pass_only=pass_only, progress=True)
        else:
            ss = methylation_sequences(fasta, reg, sheet, beta=read_beta_matrix(beta) if beta else None,
                                       bedmethyl_column=bedmethyl_column, threshold=threshold,
                                       encodings=encodings or ("extended", "bisulfite"), missing=missing,
                                       bisulfite_cpg_only=bisulfite_cpg_only, min_coverage=min_coverage,
                                       progress=True)
    except (CohortError, GenomeError) as err:
        _fail(err)
    ss.save(out)
    click.echo(ss.summary())
    bad = ss.samples[ss.samples["status"] != "ok"]
    for st, g in bad.groupby("status"):
        click.echo(f"excluded ({st}): {len(g)} samples, e.g. {g.index[0]}: {g['status_detail'].iloc[0]}", err=True)
    click.echo(f"wrote {out}/ (sequences.parquet, unique.parquet, records.parquet, samples.tsv, report.json)")


@cohort.command("embed")
@click.option("--sequences", "seq_dir", required=True, type=click.Path(file_okay=False),
              help="Sequence set from `cohort sequences`.")
@click.option("--model", "model_spec", required=True, help="Model spec: demo, evo2_7b, a model directory, hf:<dir>.")
@click.option("--layer", "layers", multiple=True, required=True, help="Layer name (repeatable), e.g. blocks.4.")
@click.option("--pooling", "poolings", multiple=True, type=click.Choice(["mean", "max"]),
              help="Pooling over positions (repeatable; default mean).")
@click.option("--region-pool", type=click.Choice(["concat", "mean"]), default="concat", show_default=True,
              help="Features per region (concat) or averaged over regions (mean).")
@click.option("--track-pool", type=click.Choice(["mean", "max"]), default="mean", show_default=True,
              help="Pooling over the two haplotypes.")
@click.option("--encoding", "encodings", multiple=True, help="Encodings to use (default: all in the set).")
@click.option("--no-share", is_flag=True, help="Embed every sample's sequence on its own (baseline; slower).")
@click.option("--sae", default=None, type=click.Path(dir_okay=False),
              help="Also pool SAE latents (a biointerp.features SAE .safetensors) of --sae-layer.")
@click.option("--sae-layer", default=None, help="Layer the SAE was trained on (default: the first --layer).")
@click.option("--device", default="auto", show_default=True, help="auto = cuda when available, else cpu.")
@click.option("--dtype", type=click.Choice(["auto", "fp32", "bf16", "fp16"]), default="auto", show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=8, show_default=True)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Samples x features table (.h5ad).")
def embed_cmd(seq_dir, model_spec, layers, poolings, region_pool, track_pool, encodings, no_share, sae, sae_layer,
              device, dtype, batch_size, out) -> None:
    """Embed every sample's sequences with a model -> samples x features AnnData.

    Example: biointerp cohort embed --sequences seqs/ --model demo --layer blocks.4 --out features.h5ad
    """
    from biointerp.cli.score import resolve_device
    from biointerp.cohort import CohortError
    from biointerp.cohort_embed import sample_features
    from biointerp.cohort_seq import SequenceSet
    from biointerp.models import load_model

    try:
        ss = SequenceSet.load(seq_dir)
    except CohortError as err:
        _fail(err)
    dev, dt = resolve_device(device, dtype)
    try:
        model = load_model(model_spec, device=dev, dtype=dt)
    except Exception as err:  # noqa: BLE001 - any loading failure is a user-facing error
        raise click.ClickException(f"--model {model_spec}: {err}") from err
    sae_pair = None
    if sae:
        from biointerp.features import SAEError, load_sae

        try:
            sae_pair = (sae_layer or layers[0], load_sae(sae))
        except SAEError as err:
            _fail(err)
    try:
        adata = sample_features(model, ss, list(layers), list(poolings) or ["mean"], region_pool, track_pool,
                                list(encodings) or None, share=not no_share, batch_size=batch_size,
                                model_spec=model_spec, sae=sae_pair, progress=True)
    except CohortError as err:
        _fail(err)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    adata.write_h5ad(out)
    e = adata.uns["biointerp"]["embedding"]
    c = adata.uns["biointerp"]["counts"]
    click.echo(f"{c['ok']} of {c['samples']} samples embedded ({c['cases']} cases / {c['controls']} controls), "
               f"{adata.n_vars} features; {e['sequences']} sequences, {e['forward_sequences']} model passes "
               f"({e['seconds']:.1f} s, {e['samples_per_s']:.2f} samples/s) -> {out}")


@cohort.command("probe")
@click.option("--features", required=True, type=click.Path(dir_okay=False),
              help="Samples x features table (.h5ad from `cohort embed` or `cohort biomarkers --out`).")
@click.option("--folds", type=click.IntRange(2), default=5, show_default=True, help="Stratified CV folds.")
@click.option("--covariate", "covariates", multiple=True, help="Sample covariate (repeatable).")
@click.option("--covariate-mode", type=click.Choice(["none", "regress", "include"]), default="none",
              show_default=True, help="Regress covariates out of the features, or add them as features.")
@click.option("--l2", type=click.FloatRange(0, None, min_open=True), default=1e-2, show_default=True)
@click.option("--n-perm", type=click.IntRange(0), default=100, show_default=True,
              help="Label permutations for the p-value (the whole CV per permutation).")
@click.option("--n-boot", type=click.IntRange(0), default=1000, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Probe artifact (.safetensors).")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
@click.option("--metrics-out", default=None, type=click.Path(dir_okay=False), help="Also write the metrics (JSON).")
@click.option("--scores-out", default=None, type=click.Path(dir_okay=False),
              help="Also write the out-of-fold scores per sample (TSV).")
def probe_cmd(features, folds, covariates, covariate_mode, l2, n_perm, n_boot, seed, out, as_json, metrics_out,
              scores_out) -> None:
    """Cross-validated cohort probe (class-balanced L2 logistic regression) with a permutation p-value.

    Example: biointerp cohort probe --features features.h5ad --covariate batch
    --covariate-mode regress --out probe.safetensors
    """
    import anndata as ad

    from biointerp.cohort import CohortError
    from biointerp.cohort_probe import cv_probe, save_cohort_probe

    if not Path(features).exists():
        raise click.ClickException(f"--features {features} not found")
    adata = ad.read_h5ad(features)
    try:
        res = cv_probe(adata, folds, covariates, covariate_mode, l2, n_perm, n_boot, seed, progress=not as_json)
    except CohortError as err:
        _fail(err)
    save_cohort_probe(out, res, adata)
    m = res["metrics"]
    if metrics_out:
        Path(metrics_out).parent.mkdir(parents=True, exist_ok=True)
        Path(metrics_out).write_text(json.dumps(m, indent=2, default=float) + "\n")
    if scores_out:
        cols = [c for c in ("label", "status", *covariates, "cv_fold", "cv_score") if c in adata.obs]
        adata.obs[cols].to_csv(scores_out, sep="\t")
    if as_json:
        click.echo(json.dumps(m, indent=2, default=float))
        return
    lo, hi = m["auroc_ci"]
    click.echo(f"{folds}-fold CV AUROC {m['auroc']:.3f} (95% CI {lo:.3f}-{hi:.3f}), AUPRC {m['auprc']:.3f} on "
               f"{m['n_samples']} samples ({m['n_cases']} cases / {m['n_controls']} controls), {m['n_features']} "
               f"features; permutation p = {m['perm_p']:.3g} ({m['n_perm']} permutations, mean permuted AUROC "
               f"{m['perm_auroc_mean']:.3f})")
    if covariates:
        click.echo(f"covariates {list(covariates)} ({covariate_mode}); covariates alone: CV AUROC "
                   f"{m['covariates_only_auroc']:.3f}")
    click.echo(f"probe (refitted on all samples) -> {out}")


@cohort.command("extend")
@click.option("--probe", "probe_path", required=True, type=click.Path(dir_okay=False),
              help="Source linear probe (a cohort probe, or a variant probe from `probe train --kind linear`).")
@click.option("--features", default=None, type=click.Path(dir_okay=False),
              help="New cohort as a samples x features table (.h5ad, labels in obs).")
@click.option("--store", "stores", multiple=True, type=click.Path(file_okay=False),
              help="Or: activation store(s) of the new cohort's variants (with --labels).")
@click.option("--labels", default=None, type=click.Path(dir_okay=False),
              help="With --store: table with variant_id and the label column.")
@click.option("--label-column", default="label", show_default=True)
@click.option("--sizes", default="20,50,100,200,all", show_default=True, help="Training sizes (comma-separated).")
@click.option("--test-frac", type=click.FloatRange(0.05, 0.95), default=0.5, show_default=True,
              help="Held-out part of the new cohort (stratified, fixed).")
@click.option("--repeats", type=click.IntRange(1), default=5, show_default=True, help="Draws per size.")
@click.option("--l2", type=click.FloatRange(0, None, min_open=True), default=1e-2, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--n-boot", type=click.IntRange(0), default=200, show_default=True,
              help="Bootstrap resamples of the held-out part per draw (the 95% intervals).")
@click.option("--baselines/--no-baselines", default=True, show_default=True,
              help="With --store: model-free baselines (variant class, substitution type, both) fitted on the "
                   "same training rows, and AUROCs within each variant class.")
@click.option("--source-labels", default=None, type=click.Path(dir_okay=False),
              help="With --store: the source cohort's labelled variants; the baselines fitted there are applied "
                   "unchanged (frozen_baseline:*).")
@click.option("--out-dir", required=True, type=click.Path(file_okay=False))
def extend_cmd(probe_path, features, stores, labels, label_column, sizes, test_frac, repeats, l2, seed, n_boot,
               baselines, source_labels, out_dir) -> None:
    """Extend a probe to a new cohort: learning curve of fine-tuned vs from-scratch vs frozen.

    Every arm is scored on one fixed, stratified held-out part of the new cohort; each size is
    drawn --repeats times. With --store (variants), model-free baselines fitted on the same
    training rows stand beside the probes, overall and within SNVs.

    Example (variant probe from BRCA1 extended to BRCA2): biointerp cohort extend
    --probe brca1_linear.safetensors --store brca2.store --labels brca2.parquet
    --source-labels brca1.parquet --out-dir extend/
    """
    import numpy as np

    from biointerp.cohort import CohortError
    from biointerp.cohort_probe import learning_curve, learning_curve_plot, source_from_probe
    from biointerp.probes.evaluate import binary_labels

    if (features is None) == (not stores):
        raise click.UsageError("give either --features or --store (with --labels)")
    if source_labels and not stores:
        raise click.UsageError("--source-labels goes with --store (variant cohorts)")
    table = src_table = src_y = None
    try:
        src = source_from_probe(probe_path)
        if features:
            X, y = _features_xy(features, src)
        else:
            if labels is None:
                raise click.UsageError("--store needs --labels")
            X, y, table = _store_xy(stores, labels, label_column, src)
            if source_labels:
                st = _label_table(source_labels, label_column)
                src_y = binary_labels(st[label_column])
                st, src_y = st[np.isfinite(src_y)], src_y[np.isfinite(src_y)]
                src_table = st
        size_list = [s.strip() if s.strip() == "all" else int(s) for s in sizes.split(",") if s.strip()]
        runs, summary = learning_curve(src, X, y, size_list, test_frac, repeats, l2, seed, progress=True,
                                       table=table if baselines else None,
                                       source_table=src_table if baselines else None, source_y=src_y,
                                       n_boot=n_boot)
    except (CohortError, ValueError, FileNotFoundError, KeyError) as err:
        _fail(err)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    runs.to_csv(out / "learning_curve_runs.tsv", sep="\t", index=False)
    summary.to_csv(out / "learning_curve.tsv", sep="\t", index=False)
    learning_curve_plot(summary, out / "learning_curve.png", title=f"{Path(probe_path).name} -> new cohort "
                        f"(n={len(y)}, {int(np.sum(y))} positive)")
    click.echo(f"new cohort: {len(y)} labelled ({int(np.sum(y))} positive), held-out part "
               f"{int(summary['n_test'].max())}; held-out AUROC (mean over draws [95% interval]) by training size:")
    for stratum, g in summary.groupby("stratum", sort=False):
        if stratum not in ("all", "snv"):
            continue
        cell = g.assign(cell=[f"{m:.3f} [{lo:.3f}, {hi:.3f}]" if np.isfinite(lo) else f"{m:.3f}"
                              for m, lo, hi in zip(g["auroc_mean"], g["auroc_lo"], g["auroc_hi"])])
        wide = cell.pivot(index="n", columns="method", values="cell")[list(dict.fromkeys(g["method"]))]
        click.echo(f"-- {stratum} (held-out n={int(g['n_test'].iloc[0])})")
        click.echo(wide.to_string())
    click.echo(f"wrote {out}/learning_curve.tsv, learning_curve_runs.tsv, learning_curve.png")


def _features_xy(features, src):
    import anndata as ad
    import numpy as np

    from biointerp.cohort import CohortError, _usable

    adata = ad.read_h5ad(features)
    feats = (src["card"].get("input") or {}).get("features")
    if not feats:
        raise CohortError("the source probe's card lists no features; extend a cohort probe with --features, "
                          "a variant probe with --store")
    miss = [f for f in feats if f not in adata.var_names]
    if miss:
        raise CohortError(f"{len(miss)} source-probe features missing from {features} (e.g. {miss[:3]})")
    ok, y = _usable(adata)
    return np.asarray(adata[ok, feats].X, dtype=np.float64), y[ok].astype(int)


def _store_xy(stores, labels, label_column, src):
    import numpy as np
    import pandas as pd
    import torch

    from biointerp.cohort import CohortError
    from biointerp.probes import featurize
    from biointerp.probes.evaluate import binary_labels
    from biointerp.store import ActivationStore

    table = _label_table(labels, label_column)
    y_all = pd.Series(binary_labels(table[label_column]), index=table.index)
    tensor = (src["card"].get("input") or {}).get("tensor")
    mode = src["features"]
    Xs, ys, idl = [], [], []
    for s in stores:
        st = ActivationStore.open(s)
        name = tensor or next(n for n in st.tensor_names if n in ("acts", "diff") or n.startswith("emb."))
        pair = bool((src["card"].get("input") or {}).get("pair", False))
        ids, t = st.read([name] + ([name + ".ref"] if pair else []))
        ids = list(ids)
        keep = [i for i, v in enumerate(ids) if v in y_all.index and np.isfinite(y_all[v])]
        x = torch.stack([t[name][keep], t[name + ".ref"][keep]], 1) if pair else t[name][keep]
        if mode == "evee_mean_diff":
            feats = featurize(x.float(), mode, pairing=src["pairing"])
        else:
            feats = featurize(x.float(), mode)
        Xs.append(feats.double().numpy())
        ys.append(y_all[[ids[i] for i in keep]].to_numpy())
        idl += [ids[i] for i in keep]
    if not Xs or sum(len(x) for x in Xs) == 0:
        raise CohortError("no labelled variants of --labels are in the store(s)")
    if len(set(idl)) < len(idl):
        raise CohortError("a variant is in more than one --store; give each variant once")
    rows = table.loc[idl]
    return np.concatenate(Xs), np.concatenate(ys).astype(int), rows.assign(variant_id=idl).set_index("variant_id")


def _label_table(labels, label_column):
    """A labelled variant table (Parquet / TSV / CSV), indexed by ``variant_id`` when it has one."""
    import pandas as pd

    from biointerp.cohort import CohortError

    table = pd.read_parquet(labels) if str(labels).endswith(".parquet") else pd.read_csv(labels, sep=None,
                                                                                      engine="python")
    if "variant_id" in table.columns:
        table = table.set_index("variant_id")
    if label_column not in table.columns:
        raise CohortError(f"label column {label_column!r} not in {labels}")
    if table.index.duplicated().any():
        raise CohortError(f"{labels}: duplicated variant ids (e.g. {table.index[table.index.duplicated()][0]!r})")
    return table


@cohort.command("evaluate-planted")
@click.option("--features", required=True, type=click.Path(dir_okay=False, exists=True),
              help="Samples x features table (.h5ad) of a `cohort simulate` cohort.")
@click.option("--truth", required=True, type=click.Path(dir_okay=False, exists=True), help="truth.tsv of the simulation.")
@click.option("--covariate", "covariates", multiple=True, default=("batch",), show_default=True)
@click.option("--folds", type=click.IntRange(2), default=5, show_default=True)
@click.option("--n-perm", type=click.IntRange(0), default=20, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", default=None, type=click.Path(dir_okay=False), help="Also write the result as JSON.")
def evaluate_planted_cmd(features, truth, covariates, folds, n_perm, seed, out) -> None:
    """Planted truth: precision at k of the planted regions and CV AUROC vs a label-permutation control."""
    import anndata as ad
    import pandas as pd

    from biointerp.cohort import CohortError
    from biointerp.cohort_sim import evaluate_planted

    try:
        res = evaluate_planted(ad.read_h5ad(features), pd.read_csv(truth, sep="\t"), tuple(covariates), folds, n_perm,
                               seed)
    except CohortError as err:
        _fail(err)
    text = json.dumps(res, indent=2, default=float)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text + "\n")
    for name in ("raw", "adjusted"):
        r = res[name]
        p, cv, pc = r["precision"], r["cv"], r["permutation_control"]
        click.echo(f"{name:>8}: precision@{p['k']} {p['precision_at_k']:.2f} (permuted labels: "
                   f"{pc['precision_at_k_mean']:.2f}, chance {pc['expected_by_chance']:.2f}); causal ranks "
                   f"{p['causal_ranks']}, confounded ranks {p['confounded_ranks']}; CV AUROC {cv['auroc']:.3f} "
                   f"[{cv['auroc_ci'][0]:.3f}, {cv['auroc_ci'][1]:.3f}] vs permuted {cv['perm_auroc_mean']:.3f} "
                   f"(p = {cv['perm_p']:.3g})")


@cohort.command("report")
@click.option("--features", required=True, type=click.Path(dir_okay=False, exists=True),
              help="Samples x features table (.h5ad).")
@click.option("--candidates", required=True, type=click.Path(file_okay=False, exists=True),
              help="Output folder of `cohort biomarkers --out-dir`.")
@click.option("--probe-metrics", default=None, type=click.Path(dir_okay=False, exists=True),
              help="Metrics JSON of `cohort probe --metrics-out`.")
@click.option("--sequences", "seq_dir", default=None, type=click.Path(file_okay=False, exists=True),
              help="Sequence set (its report.json: per-sample record statuses).")
@click.option("--top", type=click.IntRange(1), default=20, show_default=True)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="report.md")
def report_cmd(features, candidates, probe_metrics, seq_dir, top, out) -> None:
    """Markdown report of a cohort run: every sample and exclusion counted, missing values, candidates, probe."""
    from biointerp.cohort_report import cohort_report

    text = cohort_report(features, candidates, probe_metrics, seq_dir, top)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(text)
    click.echo(f"report: {out}")
