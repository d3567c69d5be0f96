"""``biointerp score``: zero-shot Δ log-likelihood scores into an AnnData table."""

from __future__ import annotations

from pathlib import Path

import click

DEVICE_HELP = "auto = cuda when available, else cpu."
DTYPE_HELP = "auto = bf16 on cuda, fp32 on cpu."
INDEX_DIR_HELP = ("Folder for the FASTA's .fai/.gzi index [default: beside the FASTA when that folder is writable "
                  "(samtools' convention), else $BIOINTERP_CACHE or ~/.cache/biointerp].")


def resolve_device(device: str, dtype: str):
    """(device, torch dtype) from the CLI strings."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise click.UsageError("--device cuda asked but no CUDA GPU is visible; use --device cpu")
    if dtype == "auto":
        dtype = "bf16" if device.startswith("cuda") else "fp32"
    return device, {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]


def load_inputs(model_spec: str, fasta: str, variants_path: str, info: tuple[str, ...], device: str,
                dtype: str, shard: int | None, n_shards: int | None,
                checkpoint: str | None = None, model_config: str | None = None, index_dir: str | None = None):
    """Open the reference, read + check variants (VCF or `variants check` Parquet), load the model.

    An input without any variant is an error ("no variants"); an empty --shard of a
    non-empty input is not (its outputs have no rows).
    """
    from biointerp.genome import Genome, GenomeError
    from biointerp.models import load_model
    from biointerp.variants import VariantInputError, read_variants

    if (shard is None) != (n_shards is None):
        raise click.UsageError("--shard and --n-shards go together (e.g. --shard 0 --n-shards 8)")
    if n_shards is not None and not 0 <= shard < n_shards:
        raise click.UsageError(f"--shard must lie in [0, {n_shards}), got {shard}")
    try:
        genome = Genome(fasta, index_dir=index_dir)
    except GenomeError as err:
        raise click.ClickException(f"--fasta {fasta}: {err}") from err
    try:
        table = read_variants(variants_path, genome, info_fields=info, progress=True)
    except (VariantInputError, OSError) as err:
        raise click.ClickException(f"--variants {variants_path}: {err}") from err
    if not len(table):
        raise click.ClickException(f"--variants {variants_path}: no variants (the file holds no records); "
                                   "nothing to do")
    if "CLINICAL_SIGNIFICANCE" in table.columns and "label" not in table.columns:
        from biointerp.variants import clinvar_labels

        stars = table["GOLD_STARS"] if "GOLD_STARS" in table.columns else None
        table["label"] = clinvar_labels(table["CLINICAL_SIGNIFICANCE"], stars).to_numpy()
    if n_shards is not None:
        from biointerp.scoring import select_shard

        table = select_shard(table, shard, n_shards)
        if not len(table):
            click.echo(f"no variants in --shard {shard} of {n_shards} ({variants_path} has fewer records than "
                       "shards); the outputs have no rows", err=True)
    dev, dt = resolve_device(device, dtype)
    try:
        extra = {k: v for k, v in (("checkpoint", checkpoint), ("config", model_config)) if v}
        model = load_model(model_spec, device=dev, dtype=dt, **extra)
    except Exception as err:  # noqa: BLE001 - any loading failure is a user-facing error
        raise click.ClickException(f"--model {model_spec}: {err}") from err
    return genome, table, model


def shard_options(f):
    f = click.option("--n-shards", type=click.IntRange(1), default=None,
                     help="Split the variant list into N contiguous ranges ...")(f)
    f = click.option("--shard", type=click.IntRange(0), default=None,
                     help="... and process only range I (0-based).")(f)
    return f


def common_options(f):
    for opt in reversed([
        click.option("--model", "model_spec", required=True,
                     help="Model spec: demo, evo2_7b, a model directory, hf:<dir> ..."),
        click.option("--checkpoint", type=click.Path(exists=True), default=None,
                     help="Local checkpoint for a registered Evo 2 name (.pt, .pt.partN shards, "
                          ".safetensors or a directory); default: $BIOINTERP_CHECKPOINTS."),
        click.option("--model-config", type=click.Path(exists=True, dir_okay=False), default=None,
                     help="Architecture YAML overriding the registered config (official Evo 2 field names)."),
        click.option("--fasta", required=True, type=click.Path(exists=True, dir_okay=False),
                     help="Reference FASTA (plain or bgzip)."),
        click.option("--index-dir", type=click.Path(file_okay=False), default=None, help=INDEX_DIR_HELP),
        click.option("--variants", "variants_path", required=True, type=click.Path(exists=True, dir_okay=False),
                     help="VCF/BCF, TSV/CSV, or the Parquet table of `biointerp variants check`."),
        click.option("--info", multiple=True, help="VCF INFO key to keep as a column (repeatable); "
                     "CLINICAL_SIGNIFICANCE (+ GOLD_STARS) also fills the `label` column."),
        click.option("--device", default="auto", show_default=True, help=DEVICE_HELP),
        click.option("--dtype", type=click.Choice(["auto", "fp32", "bf16", "fp16"]), default="auto",
                     show_default=True, help=DTYPE_HELP),
        click.option("--batch-size", type=click.IntRange(1), default=8, show_default=True,
                     help="Sequences per model call."),
        click.option("--no-prefix-reuse", is_flag=True,
                     help="Run full passes (same numbers, slower); for checking."),
    ]):
        f = opt(f)
    return f


@click.command("score")
@common_options
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="Output scores table (.h5ad, or .parquet for a flat table).")
@click.option("--window", type=click.IntRange(2), default=8192, show_default=True,
              help="Window length in bp, centred on the variant.")
@click.option("--reduce", type=click.Choice(["mean", "sum", "aligned"]), default="mean", show_default=True,
              help="Window LL: mean or sum of token log-probs; aligned = length-aware for indels: delta_ll is the "
                   "change in the summed LL of the shared downstream flank (aligned base for base) and "
                   "delta_ll_allele the alleles' own term, reported apart.")
@click.option("--strand", type=click.Choice(["fwd", "rev", "both"]), default="fwd", show_default=True,
              help="Forward, reverse complement, or both averaged.")
@click.option("--span", type=click.IntRange(0), default=None,
              help="Score only tokens within SPAN bp of the allele (default: the whole window).")
@shard_options
def score(model_spec, fasta, variants_path, info, device, dtype, batch_size, no_prefix_reuse, out, window,
          reduce, strand, span, shard, n_shards, checkpoint=None, model_config=None, index_dir=None) -> None:
    """Zero-shot variant scores (Δ log-likelihood, variant minus reference).

    --window must be even (window/2 bp either side of the variant, as in the
    Evo 2 notebook).

    Every input record appears in the output with its status; rows that are not
    `ok` have NaN scores. Example:

      biointerp score --model demo --fasta ref.fa --variants clinvar.vcf.gz --out scores.h5ad
    """
    from biointerp.scoring import score_variants
    from biointerp.tables import file_fingerprint, make_scores_adata, provenance, write_scores

    if window % 2:
        raise click.BadParameter(f"must be even (the Evo 2 zero-shot window covers window/2 bp on either side of "
                                 f"the variant); use {window - 1} or {window + 1}", param_hint="--window")
    genome, table, model = load_inputs(model_spec, fasta, variants_path, info, device, dtype, shard, n_shards,
                                       checkpoint, model_config, index_dir)
    res = score_variants(model, genome, table, window=window, reduce=reduce, strand=strand, span=span,
                         batch_size=batch_size, reuse_prefix=not no_prefix_reuse, progress=True)
    table = table.copy()
    table["status"] = res["status"].to_numpy()
    table["status_detail"] = res["status_detail"].to_numpy()
    for c in ("window_start", "offset", "n_count"):
        table[c] = res[c].to_numpy()
    score_cols = [c for c in res.columns if c.startswith(("delta_ll", "ref_ll", "alt_ll"))]
    uns = provenance(step="score", model=model_spec, model_name=model.name, window=window, reduce=reduce,
                     strand=strand, span=span, dtype=str(model.dtype), device=str(model.device),
                     fasta=str(fasta), fasta_fingerprint=file_fingerprint(fasta),
                     variants=str(variants_path), variants_fingerprint=file_fingerprint(variants_path),
                     **({"shard": shard, "n_shards": n_shards} if n_shards else {}))
    uns = {k: v for k, v in uns.items() if v is not None}
    adata = make_scores_adata(table, {c: res[c].to_numpy() for c in score_cols}, uns=uns)
    try:
        write_scores(adata, out)
    except OSError as err:
        raise click.ClickException(f"--out {out}: cannot write ({err})") from err
    n_ok = int((res["status"] == "ok").sum())
    click.echo(f"wrote {Path(out)}: {len(res)} variants, {n_ok} scored, {len(res) - n_ok} not ok "
               f"({', '.join(f'{k}={v}' for k, v in res['status'].value_counts().items() if k != 'ok') or 'none'})")
