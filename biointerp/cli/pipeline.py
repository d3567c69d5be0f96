"""``biointerp pipeline``: run the Snakemake workflows; ``biointerp demo``."""

from __future__ import annotations

import importlib
import json
import sys
import time
from pathlib import Path

import click


@click.group("pipeline")
def pipeline() -> None:
    """Snakemake workflows (variant_scoring, probe_training) and their table steps.

    `pipeline run NAME --config C` runs a workflow; plain
    `snakemake -s pipelines/NAME/Snakefile --configfile C` works the same.
    """


@pipeline.command("list")
def list_cmd() -> None:
    """List the workflows and their default configs."""
    from biointerp.pipeline import PROFILES_DIR, default_config, list_pipelines

    found = list_pipelines()
    if not found:
        raise click.ClickException("no workflows found (pipelines/ is missing from this installation)")
    for name, sf in found.items():
        click.echo(f"{name}\t{sf}\t(default config: {default_config(name)})")
    profiles = sorted(p.name for p in PROFILES_DIR.glob("*") if (p / "config.yaml").is_file())
    click.echo(f"profiles: {', '.join(profiles)}")


@pipeline.command("run")
@click.argument("name")
@click.option("--config", "configfile", type=click.Path(dir_okay=False, exists=True),
              help="Workflow config YAML (default: the workflow's config.yaml, the embedded demo).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config key (value parsed as YAML), e.g. --set n_shards=4.")
@click.option("--profile", help="Snakemake profile: local, slurm, kubernetes or a directory.")
@click.option("--cores", type=click.IntRange(1), default=2, show_default=True)
@click.option("--dry-run", "-n", is_flag=True, help="Plan only: list the jobs and their resources.")
@click.option("--forcerun", multiple=True, metavar="RULE", help="Re-run this rule's jobs.")
@click.argument("targets", nargs=-1)
def run_cmd(name, configfile, overrides, profile, cores, dry_run, forcerun, targets) -> None:
    """Run workflow NAME (see `biointerp pipeline list`) with Snakemake."""
    import yaml

    from biointerp.pipeline import run

    from biointerp.pipeline import default_config

    base = yaml.safe_load(Path(configfile or default_config(name)).read_text()) or {}
    config: dict = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise click.UsageError(f"--set {item!r}: expected KEY=VALUE")
        _set_dotted(config, base, key, yaml.safe_load(value))
    try:
        ok = run(name, configfile=configfile, config=config, cores=cores, profile=profile, dry_run=dry_run,
                 targets=targets, forcerun=forcerun)
    except (ValueError, FileNotFoundError) as err:
        raise click.ClickException(str(err)) from err
    if not ok:
        raise click.ClickException(f"pipeline {name} failed; see the messages above and the logs/ folder "
                                   "of its outdir. Re-running the same command resumes where it stopped.")


def _set_dotted(config: dict, base: dict, key: str, value) -> None:
    """``a.b=v`` -> ``{"a": {"b": v}}``; a key the workflow's config does not have is a usage error."""
    parts = key.split(".")
    node, known = config, base
    for i, part in enumerate(parts):
        if not isinstance(known, dict) or part not in known:
            where = ".".join(parts[:i]) or "the top level"
            have = ", ".join(sorted(known)) if isinstance(known, dict) else "(not a mapping)"
            raise click.UsageError(f"--set {key}: no key {part!r} at {where} of the config; known: {have}")
        known = known[part]
        if i == len(parts) - 1:
            node[part] = value
        else:
            node = node.setdefault(part, {})


@pipeline.command("lint")
@click.argument("name")
@click.option("--config", "configfile", type=click.Path(dir_okay=False, exists=True))
def lint_cmd(name, configfile) -> None:
    """Run Snakemake's linter on workflow NAME."""
    from biointerp.pipeline import lint

    if not lint(name, configfile):
        raise click.ClickException(f"{name}: the linter reported problems (above)")
    click.echo(f"{name}: lint clean")


# ------------------------------------------------------------------ table steps called by the rules
@pipeline.command("labels")
@click.argument("table", type=click.Path(dir_okay=False, exists=True))
@click.option("--out", required=True, type=click.Path(dir_okay=False))
@click.option("--spec", default="{}", show_default=True, help="JSON: the workflow's `labels` config.")
@click.option("--columns", default="{}", show_default=True, help='JSON: obs name -> column, e.g. {"gene": "GENE"}.')
def labels_cmd(table, out, spec, columns) -> None:
    """Add the `label` column (1/0/NaN) to a checked variant table (rule label_variants)."""
    import pandas as pd

    from biointerp.pipeline import add_labels

    df = pd.read_parquet(table)
    try:
        df = add_labels(df, json.loads(spec), json.loads(columns))
    except KeyError as err:
        raise click.ClickException(str(err.args[0])) from err
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    df.to_parquet(out, index=False)
    lab = df["label"]
    click.echo(f"{len(df)} variants: {int((lab == 1).sum())} positive, {int((lab == 0).sum())} negative, "
               f"{int(lab.isna().sum())} unlabelled -> {out}")


@pipeline.command("split")
@click.argument("table", type=click.Path(dir_okay=False, exists=True))
@click.option("--out", required=True, type=click.Path(dir_okay=False))
@click.option("--by", type=click.Choice(["gene", "chromosome", "column", "random"]), default="gene", show_default=True)
@click.option("--column", default="", help="Gene column (by gene) or split column (by column).")
@click.option("--test-fraction", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.3,
              show_default=True)
@click.option("--val-fraction", type=click.FloatRange(0, 1, max_open=True), default=0.1, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def split_cmd(table, out, by, column, test_fraction, val_fraction, seed) -> None:
    """Add a leakage-free `split` column (train/val/test) to a labelled table (rule split_variants)."""
    import pandas as pd

    from biointerp.pipeline import add_split

    df = add_split(pd.read_parquet(table), by=by, column=column or None, test_fraction=test_fraction,
                   val_fraction=val_fraction, seed=seed)
    df.to_parquet(out, index=False)
    click.echo(f"split by {by}: " + ", ".join(f"{k} {v}" for k, v in df["split"].value_counts().items())
               + f" -> {out}")


@pipeline.command("finalize")
@click.argument("tables", nargs=-1, type=click.Path(dir_okay=False, exists=True))
@click.option("--variants", required=True, type=click.Path(dir_okay=False, exists=True),
              help="Labelled variant table: one row per input variant.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="scores.h5ad")
@click.option("--parquet", type=click.Path(dir_okay=False), help="Also write the flat table as Parquet.")
def finalize_cmd(tables, variants, out, parquet) -> None:
    """Join score tables (zero-shot, probes) onto every input variant (rule finalize_scores)."""
    import pandas as pd

    from biointerp.pipeline import finalize
    from biointerp.tables import write_scores

    adata = finalize(pd.read_parquet(variants), tables)
    write_scores(adata, out)
    if parquet:
        write_scores(adata, parquet)
    n_ok = int((adata.obs["status"].astype(str) == "ok").sum())
    click.echo(f"{adata.n_obs} variants ({n_ok} ok), scores {list(adata.var_names)} -> {out}")


@pipeline.command("report")
@click.option("--scores", required=True, type=click.Path(dir_okay=False, exists=True))
@click.option("--out-dir", required=True, type=click.Path(file_okay=False))
@click.option("--n-boot", type=click.IntRange(0), default=1000, show_default=True)
def report_cmd(scores, out_dir, n_boot) -> None:
    """Report of a scores table: summary, status counts, distributions, ROC by consequence."""
    from biointerp.report import scoring_report
    from biointerp.tables import read_scores

    s = scoring_report(read_scores(scores), out_dir, n_boot=n_boot)
    click.echo(f"report: {Path(out_dir) / 'report.md'} ({s['n_variants']} variants)")


@pipeline.command("training-report")
@click.argument("evals", nargs=-1, type=click.Path(dir_okay=False, exists=True))
@click.option("--labels", required=True, type=click.Path(dir_okay=False, exists=True))
@click.option("--scores", type=click.Path(dir_okay=False, exists=True), help="Zero-shot scores table to compare.")
@click.option("--out-dir", required=True, type=click.Path(file_okay=False))
@click.option("--n-boot", type=click.IntRange(0), default=1000, show_default=True)
def training_report_cmd(evals, labels, scores, out_dir, n_boot) -> None:
    """Compare probes (evaluation JSONs) with zero-shot scores on the test split."""
    import pandas as pd

    from biointerp.report import training_report
    from biointerp.tables import read_scores

    table = training_report(evals, pd.read_parquet(labels), out_dir,
                            zeroshot=read_scores(scores) if scores else None, n_boot=n_boot)
    click.echo(table.to_string(index=False))


# ------------------------------------------------------------------ demo
#: CLI modules the demo needs (issue that provides them).
DEMO_NEEDS = {
    "biointerp.cli.synth": "synthetic genome (biointerp synth)",
    "biointerp.cli.variants": "variant check (biointerp variants)",
    "biointerp.cli.score": "zero-shot scoring (biointerp score)",
    "biointerp.cli.harvest": "activation harvest (biointerp harvest)",
    "biointerp.cli.tables": "table merge (biointerp tables)",
    "biointerp.cli.probe": "probes (biointerp probe)",
    "biointerp.cli.db": "variant database (biointerp db)",
}


def missing_pieces() -> list[str]:
    """Demo prerequisites not importable in this installation."""
    missing = []
    for mod, what in DEMO_NEEDS.items():
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError:
            missing.append(what)
    return missing


@click.command("demo")
@click.option("--outdir", default="results/demo", show_default=True, type=click.Path(file_okay=False))
@click.option("--cores", type=click.IntRange(1), default=2, show_default=True)
@click.option("--shards", type=click.IntRange(1), default=2, show_default=True)
@click.option("--model", default="demo", show_default=True,
              help="Model spec; the bundled demo model by default (e.g. evo2_7b on a GPU machine).")
def demo(outdir, cores, shards, model) -> None:
    """Run both pipelines on the embedded default: a synthetic genome with planted
    biology, its labelled variants and the bundled demo model.

    1. probe_training: harvest activations, train linear and covariance probes,
       evaluate them against zero-shot scores on the held-out contig.
    2. variant_scoring: zero-shot scores + the trained probes for every variant
       -> scores table, Parquet, annotated VCF, DuckDB database, report.
    """
    from biointerp.pipeline import default_config, run

    missing = missing_pieces()
    if missing:
        click.echo("biointerp demo: not yet available in this checkout; missing: " + "; ".join(missing) + ".")
        return
    out = Path(outdir)
    t0 = time.time()
    # One outdir for both workflows: variant_scoring reuses the checked variants, the
    # activation stores and the zero-shot shards that probe_training computed.
    pt = _read_yaml(default_config("probe_training"))
    # Model jobs (score, harvest) run in this process beside each other (biointerp.rulejob,
    # CONCURRENT_COMMANDS): each declares one core so that Snakemake starts `cores` of them at once.
    resources = {**pt["resources"], "model": {**pt["resources"]["model"], "threads": 1}}
    common = {"outdir": str(out), "n_shards": shards, "model": model, "resources": resources,
              "fasta": str(out / "inputs" / "genome.fa"), "variants": str(out / "inputs" / "variants.vcf.gz")}
    import os

    from biointerp import rulejob

    if "OMP_NUM_THREADS" not in os.environ:
        # the demo's parallelism is across processes (two forked model jobs; the cohort and
        # feature steps beside the scoring workflow): one compute thread each, not one per core
        os.environ["OMP_NUM_THREADS"] = "1"
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(1)
    # lightning (the covariance probe's trainer) loads while the forked model jobs run
    rulejob.prewarm_after_fork("lightning")
    click.echo(f"[1/2] probe_training: synthetic genome, activations, linear + covariance probes -> {out}")
    if not run("probe_training", default_config("probe_training"), common, cores=cores, quiet=True):
        raise click.ClickException(f"probe_training failed; logs in {out / 'logs'}")
    probes = {k: str(out / "training" / "probes" / f"{k}.safetensors") for k in ("linear", "covariance")}
    # the cohort and feature steps need only the inputs: they run beside variant_scoring
    side = _SideSteps(out, model)
    click.echo(f"[2/2] variant_scoring: scores table, database, annotated VCF, report -> {out}")
    # the same inputs and activations as probe_training (so its jobs are reused, not re-run)
    ok = run("variant_scoring", default_config("variant_scoring"),
             {**common, "synthetic": pt["synthetic"], "harvest": pt["harvest"], "probes": probes},
             cores=cores, quiet=True)
    feat = side.finish()
    if not ok:
        raise click.ClickException(f"variant_scoring failed; logs in {out / 'logs'}")
    import pandas as pd
    dt = time.time() - t0
    click.echo("")
    click.echo(f"Demo finished in {dt:.0f} s. Results in {out}/:")
    click.echo("  scores.h5ad, scores.parquet   every variant with its status, delta_ll and probe scores")
    click.echo("  variants.duckdb               biointerp db query --db ... <variant id | --gene G | --region R>")
    click.echo("  annotated.vcf.gz              the input VCF with BI_* INFO fields")
    click.echo("  report/report.md              status counts, score distributions, ROC by consequence")
    click.echo("  training/probes/*.safetensors linear and covariance probes (with cards)")
    click.echo("  training/report/report.md     probes vs zero-shot vs baselines on the held-out test split, "
               "per stratum")
    click.echo("  cohort/features.h5ad          samples x features from per-sample haplotypes (cohort step)")
    click.echo("  features/                     SAE (sae.safetensors), labelled latents (features.h5ad), "
               "explanations.parquet")
    click.echo("")
    click.echo("Probes vs zero-shot vs model-free baselines (fitted on the training split) on the held-out test "
               "split (AUROC, 95% CI; within = mean of per-variant-class AUROCs; better = the interval of the "
               "difference from the best baseline lies above 0; carried_by_composition = the overall AUROC exceeds "
               "every per-variant-class AUROC):")
    _print_tsv(out / "training" / "report" / "summary.tsv", sys.stdout,
               ["method", "auroc", "auroc_lo", "auroc_hi", "auroc_within", "within_lo", "within_hi",
                "better_than_baselines_within", "better_than_baselines_overall", "carried_by_composition"])
    _print_strata(out / "training" / "report" / "comparison.tsv", sys.stdout)
    _print_pairs(out / "training" / "report" / "pairs.tsv", sys.stdout)
    click.echo("")
    status = pd.read_csv(out / "report" / "status_counts.tsv", sep="\t")
    click.echo("All variants (" + ", ".join(f"{r.n} {r.status}" for r in status.itertuples())
               + "; probe figures here include their own training variants):")
    _print_tsv(out / "report" / "scores.tsv", sys.stdout,
               ["score", "n_scored", "auroc", "auroc_lo", "auroc_hi", "auprc"])
    click.echo("")
    click.echo(f"SAE on {feat['layer']} ({feat['seconds']:.0f} s): explained variance "
               f"{feat['explained_variance']:.2f}, loss recovered {feat['loss_recovered']:.2f}; best latent per class "
               "on the held-out contig (F1, AUROC):")
    click.echo(feat["best"].to_string(float_format=lambda x: f"{x:.3f}"))
    click.echo(f"  biointerp explain VARIANT_ID --explanations {out / 'features' / 'explanations.parquet'}")
    click.echo("")
    click.echo("What it shows: the damaging variants of the synthetic genome were planted by design "
               "(splice sites, nonsense, start/stop loss, domain missense, motif loss). AUROC above 0.5 "
               "means the model's likelihoods (zero-shot) or its activations (probes) recover that "
               "biology. The test split (contig synth4) was unseen by the demo model and by the probes: "
               "those are the honest figures, and a score counts only where it beats the model-free baselines "
               "(variant class, substitution type, consequence class, their combination). Here the consequence "
               "class defines the label, so its baseline is perfect by construction: the question is how much of "
               "that annotation the model recovers without being given it; variant class and substitution type "
               "are the annotation-free baselines.")
    click.echo("")
    click.echo(f"Browse the variants in a web page: biointerp db serve --db {out / 'variants.duckdb'} "
               "(then open http://127.0.0.1:8000/; Ctrl+C stops it)")


def _side_steps(out: Path, model: str) -> dict:
    """The demo's cohort and feature steps (they read only ``out/inputs``)."""
    from biointerp.features.demo import feature_demo

    _demo_cohort(out / "cohort", model)
    click.echo(f"[+] features: sparse autoencoder on the demo model, labelled latents, explanations -> "
               f"{out / 'features'}")
    return feature_demo(out / "inputs", out / "features", model)


class _SideSteps:
    """:func:`_side_steps` in a forked child (:func:`biointerp.rulejob.start_forked`) while this
    process runs variant_scoring (each step is single-threaded, and the machine has two cores);
    its output is shown when it is collected. Where jobs do not fork
    (:func:`biointerp.rulejob.fork_enabled`) the steps run here, in :meth:`finish`."""

    def __init__(self, out: Path, model: str) -> None:
        import tempfile

        from biointerp.rulejob import fork_enabled, start_forked

        self.out, self.model, self.pid = out, model, None
        if not fork_enabled():
            return
        self.dir = Path(tempfile.mkdtemp(prefix="side.", dir=out))
        self.fh = open(self.dir / "output.txt", "w")  # noqa: SIM115 - closed in finish()

        def steps() -> int:
            feat = _side_steps(out, model)
            best = feat["best"].reset_index()
            (self.dir / "result.json").write_text(json.dumps(
                {**{k: v for k, v in feat.items() if k != "best"}, "best": best.to_dict("list"),
                 "best_index": best.columns[0]}, default=str))
            return 0

        # one core here, the other for the scoring workflow
        self.pid = start_forked(steps, self.fh, threads=1)

    def finish(self) -> dict:
        """Wait for the steps, echo what they printed and return the feature summary."""
        import shutil

        import pandas as pd

        from biointerp.rulejob import wait_forked

        if self.pid is None:
            return _side_steps(self.out, self.model)
        code = wait_forked(self.pid)
        self.fh.close()
        text = (self.dir / "output.txt").read_text()
        click.echo(text, nl=False)
        if code != 0:
            raise click.ClickException(f"the demo's cohort/feature steps failed:\n{text[-2000:]}")
        res = json.loads((self.dir / "result.json").read_text())
        shutil.rmtree(self.dir, ignore_errors=True)
        res["best"] = pd.DataFrame(res.pop("best")).set_index(res.pop("best_index"))
        return res


def _demo_cohort(out: Path, model: str) -> None:
    """A few-second cohort step: planted VCF cohort -> haplotypes -> embeddings -> candidates + CV probe."""
    from biointerp.cohort_sim import demo_cohort
    from biointerp.models import load_model

    click.echo(f"[+] cohort: planted genotype cohort -> per-sample haplotypes -> {model} embeddings -> {out}")
    t = time.time()
    r = demo_cohort(out, load_model(model))
    p = r["precision"]
    click.echo(f"      {r['samples']} samples x {r['regions']} regions: {r['sequences']} haplotype sequences, "
               f"{r['model_passes']} model passes (shared); planted region ranked {p['causal_ranks']} of "
               f"{p['n_regions']} (batch regressed out); CV probe AUROC {r['cv_auroc']:.2f} "
               f"({time.time() - t:.1f} s)")


def _print_strata(path: Path, stream, by: str = "variant_class") -> None:
    """Per-stratum AUROC and AUPRC [95% CI] of the training report (comparison.tsv), strata of ``by``."""
    import pandas as pd

    if not path.is_file():
        stream.write(f"  ({path} missing)\n")
        return
    df = pd.read_csv(path, sep="\t")
    df = df[(df["by"] == by) & df["auroc"].notna()] if "by" in df.columns else df.iloc[:0]
    if not len(df):
        return
    df["stratum"] = [f"{s} (n={n}, {int(p)} pos)" for s, n, p in zip(df["stratum"], df["n"], df["n_pos"])]
    for m, note in (("auroc", ""), ("auprc", "; a random score's AUPRC is the stratum's positive fraction")):
        df["cell"] = [f"{v:.3f} [{lo:.3f}, {hi:.3f}]" for v, lo, hi in zip(df[m], df[f"{m}_lo"], df[f"{m}_hi"])]
        wide = df.pivot_table(index="score", columns="stratum", values="cell", aggfunc="first", sort=False)
        wide = wide.reindex(list(dict.fromkeys(df["score"])))
        wide.index.name = wide.columns.name = None
        stream.write(f"\n{m.upper()} per {by.replace('_', ' ')} (95% CI{note}):\n{wide.to_string()}\n")


def _print_pairs(path: Path, stream) -> None:
    """The paired AUROC differences of the training report (pairs.tsv), one line per pair."""
    import pandas as pd

    if not path.is_file():
        stream.write(f"  ({path} missing)\n")
        return
    df = pd.read_csv(path, sep="\t")
    if not len(df):
        return
    n_sep = int(df["separated"].sum())
    stream.write(f"\nPaired differences on the same test variants (AUROC A - B, 95% interval from the same "
                 f"resamples; separated = the interval excludes 0): {n_sep} of {len(df)} separated\n")
    rows = [{"basis": r.basis.replace("within:", "within "), "A": r.a, "B": r.b,
             "B is": r.comparison, "A - B [95% CI]": f"{r.delta:+.3f} [{r.delta_lo:+.3f}, {r.delta_hi:+.3f}]",
             "separated": f"yes ({r.favours} higher)" if r.separated else "no"} for r in df.itertuples()]
    stream.write(pd.DataFrame(rows).to_string(index=False) + "\n")


def _read_yaml(path):
    import yaml

    return yaml.safe_load(Path(path).read_text())


def _print_tsv(path: Path, stream, columns=None) -> None:
    import pandas as pd

    if not path.is_file():
        stream.write(f"  ({path} missing)\n")
        return
    df = pd.read_csv(path, sep="\t")
    if columns:
        df = df[[c for c in columns if c in df.columns]]
    stream.write(df.to_string(index=False, float_format=lambda x: f"{x:.3f}") + "\n")
