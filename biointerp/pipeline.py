"""Run the Snakemake workflows of ``pipelines/`` through Snakemake's Python API,
plus the small table steps those workflows call (labels, split, finalize).

The workflows also run with plain ``snakemake -s pipelines/NAME/Snakefile
--configfile ...``; this module only saves typing and finds the files.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

#: Repository root (the workflows and profiles live beside the package).
ROOT = Path(__file__).resolve().parents[1]
PIPELINES_DIR = Path(os.environ.get("BIOINTERP_PIPELINES", ROOT / "pipelines"))
PROFILES_DIR = Path(os.environ.get("BIOINTERP_PROFILES", ROOT / "snakemake" / "profiles"))


# --------------------------------------------------------------------------- locating workflows
def list_pipelines() -> dict[str, Path]:
    """``name -> Snakefile`` for every workflow under ``pipelines/``."""
    if not PIPELINES_DIR.is_dir():
        return {}
    return {p.parent.name: p for p in sorted(PIPELINES_DIR.glob("*/Snakefile"))}


def snakefile(name: str) -> Path:
    """Snakefile of workflow ``name``; ``ValueError`` naming the known ones otherwise."""
    found = list_pipelines()
    if name not in found:
        known = ", ".join(found) or f"none found under {PIPELINES_DIR}"
        raise ValueError(f"unknown pipeline {name!r}; known pipelines: {known}")
    return found[name]


def default_config(name: str) -> Path:
    """The workflow's default ``config.yaml`` (the embedded demo)."""
    return snakefile(name).parent / "config.yaml"


def resolve_profile(profile: str | Path) -> Path:
    """A profile name under ``snakemake/profiles`` (local, slurm, kubernetes) or a directory."""
    p = Path(profile)
    if (p / "config.yaml").is_file():
        return p.resolve()
    q = PROFILES_DIR / str(profile)
    if (q / "config.yaml").is_file():
        return q
    names = ", ".join(sorted(d.name for d in PROFILES_DIR.glob("*") if (d / "config.yaml").is_file()))
    raise ValueError(f"no Snakemake profile {profile!r}; use one of {names} or a directory with config.yaml")


# --------------------------------------------------------------------------- running
def run(
    name: str,
    configfile: str | Path | None = None,
    config: Mapping | None = None,
    cores: int = 2,
    profile: str | Path | None = None,
    dry_run: bool = False,
    targets: Sequence[str] = (),
    forcerun: Sequence[str] = (),
    workdir: str | Path | None = None,
    quiet: bool = False,
) -> bool:
    """Run workflow ``name`` with Snakemake; returns True on success.

    Parameters
    ----------
    configfile
        Workflow config (default: the workflow's ``config.yaml``).
    config
        Overrides merged into it (nested dicts merge key by key).
    profile
        A Snakemake profile (``local``, ``slurm``, ``kubernetes`` or a
        directory): then Snakemake's own command-line layer reads the profile
        and drives the API, so every executor plugin option works.
    dry_run
        Plan only (prints the jobs and their resources).
    forcerun
        Rules whose jobs are re-run even if up to date.
    """
    sf = snakefile(name)
    cfg = Path(configfile) if configfile else default_config(name)
    if not cfg.is_file():
        raise FileNotFoundError(f"config file {cfg} not found; start from {default_config(name)}")
    workdir = Path(workdir or Path.cwd()).resolve()
    if profile is not None:
        return _run_cli(sf, cfg, config, cores, resolve_profile(profile), dry_run, targets, forcerun, workdir, quiet)

    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import (
        ConfigSettings,
        DAGSettings,
        ExecutionSettings,
        OutputSettings,
        ResourceSettings,
    )

    with SnakemakeApi(OutputSettings(printshellcmds=not quiet, show_failed_logs=True,
                                     quiet=None if not quiet else _quiet_all())) as api:
        try:
            wf = api.workflow(
                resource_settings=ResourceSettings(cores=cores),
                config_settings=ConfigSettings(configfiles=[cfg.resolve()], config=dict(config or {})),
                snakefile=sf,
                workdir=workdir,
            )
            dag = wf.dag(DAGSettings(targets=set(targets), forcerun=set(forcerun)))
            dag.execute_workflow(
                executor="local",
                pseudo_executor="dryrun" if dry_run else None,
                # use_threads: the rules' biointerp commands run in this process (biointerp.rulejob)
                execution_settings=ExecutionSettings(keep_going=True, use_threads=True),
            )
        except Exception as err:  # Snakemake reports its own errors (rule, log file, cause)
            api.print_exception(err)
            return False
    return True


def _quiet_all():
    from snakemake.settings.enums import Quietness

    return {Quietness.PROGRESS, Quietness.RULES}


def _run_cli(sf, cfg, config, cores, profile, dry_run, targets, forcerun, workdir, quiet) -> bool:
    """Run through ``snakemake.cli`` so that the profile is read exactly as the command line does."""
    import tempfile

    import yaml
    from snakemake.cli import args_to_api, parse_args

    configfiles = [str(cfg.resolve())]
    if config:  # typed overrides as a second config file (--config would turn nested values into strings)
        tmp = tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix="biointerp-overrides-", delete=False)
        with tmp:
            yaml.safe_dump(json.loads(json.dumps(dict(config))), tmp)
        configfiles.append(tmp.name)
    argv = ["--snakefile", str(sf), "--configfile", *configfiles, "--profile", str(profile),
            "--directory", str(workdir)]
    if cores:
        argv += ["--cores", str(cores)]
    if dry_run:
        argv.append("--dry-run")
    if forcerun:
        argv += ["--forcerun", *forcerun]
    if quiet:
        argv += ["--quiet", "rules"]
    argv += list(targets)
    try:
        parser, args = parse_args(argv)
        return bool(args_to_api(args, parser))
    finally:
        for extra in configfiles[1:]:
            Path(extra).unlink(missing_ok=True)


def lint(name: str, configfile: str | Path | None = None, config: Mapping | None = None) -> bool:
    """``snakemake --lint`` through the API; True when there is nothing to report."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings

    cfg = Path(configfile) if configfile else default_config(name)
    with SnakemakeApi(OutputSettings()) as api:
        wf = api.workflow(
            resource_settings=ResourceSettings(cores=1),
            config_settings=ConfigSettings(configfiles=[cfg.resolve()], config=dict(config or {})),
            snakefile=snakefile(name),
        )
        return not wf.lint()


# --------------------------------------------------------------------------- table steps used by rules
def add_labels(table: pd.DataFrame, spec: Mapping, columns: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Add ``label`` (1.0 positive, 0.0 negative, NaN unlabelled) and rename columns.

    ``spec`` is the workflow's ``labels`` config: ``column`` (None: no labels),
    ``scheme`` (``binary`` with ``positive``/``negative`` value lists, or
    ``clinvar`` mapped by :func:`biointerp.variants.clinvar_labels` with
    ``stars_column`` and ``min_stars``). The source value is kept as
    ``label_source``. ``columns`` maps obs names to input columns, e.g.
    ``{"gene": "GENE", "consequence": "CSQ"}``. Rows are never dropped.
    """
    out = table.copy()
    for std, src in (columns or {}).items():
        if src not in out.columns:
            raise KeyError(f"column {src!r} (for {std!r}) not in the variant table; columns: {list(out.columns)}")
        out[std] = out[src]
    col = spec.get("column")
    if not col:
        out["label"] = np.nan
        return out
    if col not in out.columns:
        raise KeyError(f"label column {col!r} not in the variant table; columns: {list(out.columns)}. "
                       "Add it to info_fields (VCF INFO key) or fix labels.column.")
    raw = out[col]
    if spec.get("scheme", "binary") == "clinvar":
        from biointerp.variants import clinvar_labels

        stars_col = spec.get("stars_column")
        stars = out[stars_col] if stars_col else None
        named = pd.Series(clinvar_labels(raw, stars, spec.get("min_stars", 0)), index=out.index).astype(str)
        label = named.map({"pathogenic": 1.0, "benign": 0.0})
    else:
        key = raw.astype("string").str.strip().str.lower()
        pos = {str(v).lower() for v in spec.get("positive", ())}
        neg = {str(v).lower() for v in spec.get("negative", ())}
        label = pd.Series(np.where(key.isin(pos), 1.0, np.where(key.isin(neg), 0.0, np.nan)), index=out.index)
    out["label_source"] = raw.astype("string").fillna("").astype(str)
    out["label"] = label.astype(float)
    return out


def add_split(table: pd.DataFrame, by: str = "gene", column: str | None = None,
              test_fraction: float = 0.3, val_fraction: float = 0.1, seed: int = 0) -> pd.DataFrame:
    """Add ``split`` (train/val/test) with :func:`biointerp.probes.splits.make_split`.

    ``by``: ``gene`` (whole genes held out; ``column`` names the gene column,
    default ``gene``), ``chromosome``, ``column`` (``column`` already holds
    train/val/test) or ``random``.
    """
    from biointerp.probes.splits import make_split

    out = table.copy()
    if by == "gene" and column and column != "gene":
        out["gene"] = out[column]
    how = {"gene": "gene", "chromosome": "chrom", "random": "random"}.get(by)
    if by == "column":
        if not column:
            raise ValueError("split by column needs split.column")
        how = f"column:{column}"
    if how is None:
        raise ValueError(f"unknown split {by!r}; use gene, chromosome, column or random")
    out["split"] = make_split(out, how=how, test_frac=test_fraction, val_frac=val_fraction, seed=seed).to_numpy()
    return out


def finalize(variants: pd.DataFrame, tables: Sequence[str | Path]):
    """Scores table with one row per input variant: obs from ``variants`` (all
    statuses), score columns gathered by ``variant_id`` from each AnnData in
    ``tables`` (zero-shot, probes). Non-``ok`` rows get NaN scores."""
    import anndata as ad

    from biointerp.tables import make_scores_adata, provenance

    scores: dict[str, np.ndarray] = {}
    obsm: dict[str, np.ndarray] = {}
    uns: dict = {}
    ids = variants["variant_id"].astype(str)
    for path in tables:
        a = ad.read_h5ad(path)
        first = ~a.obs_names.duplicated()
        index = pd.Index(a.obs_names[first])
        pos = index.get_indexer(ids)
        X = np.asarray(a.X, dtype=np.float32)[first]
        for j, name in enumerate(a.var_names):
            col = np.full(len(ids), np.nan, dtype=np.float32)
            col[pos >= 0] = X[pos[pos >= 0], j]
            scores[str(name)] = col
        for key, arr in a.obsm.items():
            arr = np.asarray(arr)[first]
            full = np.full((len(ids), arr.shape[1]), np.nan, dtype=np.float32)
            full[pos >= 0] = arr[pos[pos >= 0]]
            obsm[key] = full
        uns[Path(path).stem] = dict(a.uns.get("biointerp", {}))
    return make_scores_adata(variants.reset_index(drop=True), scores, obsm=obsm,
                             uns=provenance(step="pipeline.finalize", inputs=uns))
