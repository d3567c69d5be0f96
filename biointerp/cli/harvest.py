"""``biointerp harvest``: activations (EVEE views or poolings) into a resumable store."""

from __future__ import annotations

import click

from biointerp.cli.score import common_options, load_inputs, shard_options


@click.command("harvest")
@common_options
@click.option("--layer", "layers", multiple=True, required=True,
              help="Layer name (module name, e.g. blocks.27); repeat for several layers (poolings).")
@click.option("--view", type=click.Choice(["evee", "evee_diff", "variant", "window_mean", "mean"]),
              default="evee", show_default=True,
              help="evee: [2,3,K,d] three views (see --recipe); evee_diff: the recipe's var-ref diff only "
                   "[2,K,d]; variant/window_mean/mean: pooled [d] per layer.")
@click.option("--recipe", type=click.Choice(["evee", "genomic"]), default="evee", show_default=True,
              help="EVEE views: evee = EVEE's public harvest exactly (alt spliced into the window, views "
                   "var_same/ref_same/ref_cross with ref_cross the other strand's reference, same-index "
                   "pairing); genomic = ours (same-length windows, var vs the reference at the same genomic "
                   "base, views var_same/ref_same/ref_aligned). Recorded in the store.")
@click.option("--store", "store_dir", required=True, type=click.Path(file_okay=False),
              help="Store directory; an existing one with the same settings is resumed.")
@click.option("--upstream", type=click.IntRange(0), default=None,
              help="bp before the variant [evee: 49152, else 4096].")
@click.option("--downstream", type=click.IntRange(1), default=None,
              help="bp from the variant on [evee: 16384, else 4096].")
@click.option("-K", "--K", "K", type=click.IntRange(1), default=256, show_default=True,
              help="Positions kept per direction (EVEE views).")
@click.option("--fixed", type=click.IntRange(0), default=64, show_default=True,
              help="Fixed window right after the variant (forward direction).")
@click.option("--fixed-rev", type=click.IntRange(0), default=0, show_default=True,
              help="Fixed window right before the variant (reverse direction; genomic recipe only).")
@click.option("--pool-window", type=click.IntRange(0), default=64, show_default=True,
              help="Half-width (bp) of the window_mean pooling.")
@click.option("--shard-size", type=click.IntRange(1), default=64, show_default=True,
              help="Variants per store shard.")
@click.option("--out", default=None, type=click.Path(dir_okay=False),
              help="Also write an AnnData table (.h5ad) with pooled embeddings in obsm (pooling views).")
@click.option("--prefix-reuse", "prefix_reuse", is_flag=True,
              help="evee recipe: compute variant passes from their first differing token (faster; numbers equal to "
                   "float rounding, but positions tying the K-th within fp32 rounding may swap). Without it the evee "
                   "recipe is bitwise equal to EVEE's four full passes; the other views use prefix reuse unless "
                   "--no-prefix-reuse.")
@click.option("--repair", is_flag=True,
              help="First check every shard of an existing --store and drop the damaged ones (missing or failing "
                   "their checksum), then recompute exactly their variants (same options as the first run).")
@shard_options
def harvest(model_spec, fasta, variants_path, info, device, dtype, batch_size, no_prefix_reuse, layers, view,
            recipe, store_dir, upstream, downstream, K, fixed, fixed_rev, pool_window, shard_size, out, shard,
            n_shards, checkpoint=None, model_config=None, repair=False, prefix_reuse=False,
            index_dir=None) -> None:
    """Harvest activations for variants into an activation store.

    Resumable: rerun the same command after a crash and it continues from the
    last complete shard without duplicating variants. With --shard/--n-shards
    give each shard its own --store directory. Example:

      biointerp harvest --model demo --fasta ref.fa --variants v.vcf.gz --layer blocks.6 --view evee --store acts/

    EVEE's defaults for Evo 2 7B: --layer blocks.27 (20B: blocks.20), 49,152 +
    16,384 bp, -K 256, --fixed 64.
    """
    from biointerp.harvest import harvest as run_harvest
    from biointerp.store import StoreError

    if fixed > K:
        raise click.UsageError(f"--fixed ({fixed}) cannot exceed -K ({K})")
    if prefix_reuse and no_prefix_reuse:
        raise click.UsageError("--prefix-reuse and --no-prefix-reuse contradict each other; give one")
    if recipe == "evee" and fixed_rev and view.startswith("evee"):
        raise click.UsageError("--fixed-rev: EVEE's harvest has no fixed window upstream; use --recipe genomic")
    if out is not None and view.startswith("evee"):
        raise click.UsageError("--out writes pooled embeddings; use it with --view variant|window_mean|mean")
    genome, table, model = load_inputs(model_spec, fasta, variants_path, info, device, dtype, shard, n_shards,
                                       checkpoint, model_config, index_dir)
    bad = [x for x in layers if x not in model.layer_names]
    if bad:
        raise click.UsageError(f"--layer {bad[0]!r} is not a layer of {model.name}; layers look like "
                               f"{', '.join(model.layer_names[1:7])} (see `biointerp models info`)")
    if repair:
        _drop_damaged(store_dir)
    try:
        store = run_harvest(model, genome, table, list(layers), view=view, recipe=recipe, store=store_dir,
                            upstream=upstream,
                            downstream=downstream, K=K, fixed=fixed, fixed_rev=fixed_rev, pool_window=pool_window,
                            shard_size=shard_size, batch_size=batch_size,
                            reuse_prefix=False if no_prefix_reuse else (True if prefix_reuse else None))
    except StoreError as err:
        raise click.ClickException(str(err)) from err
    except ValueError as err:
        raise click.UsageError(str(err)) from err
    left = store.damaged_ids
    if left:
        raise click.ClickException(f"{len(left)} damaged variants of {store_dir} are not in --variants "
                                   f"(e.g. {left[0]}); rerun with the --variants file the store was made from")
    info_ = store.info()
    click.echo(f"store {store_dir}: {info_['n_variants']} variants ({info_['status_counts']}), "
               f"{info_['n_shards']} shards, {info_['bytes'] / 1e6:.2f} MB, "
               f"{info_['bytes_per_variant'] / 1e3:.1f} kB per stored variant")
    if out is not None:
        _write_table(store, table, model, list(layers), view, model_spec, out)


def _drop_damaged(store_dir: str) -> None:
    from pathlib import Path

    from biointerp.store import MANIFEST, ActivationStore, StoreError

    if not (Path(store_dir) / MANIFEST).exists():
        raise click.UsageError(f"--repair: {store_dir} holds no activation store to repair")
    try:
        dropped = ActivationStore.open(store_dir).mark_damaged(progress=True)
    except StoreError as err:
        raise click.ClickException(str(err)) from err
    n = sum(len(v) for v in dropped.values())
    click.echo(f"repair: {len(dropped)} damaged shard(s) dropped, {n} variants to recompute", err=True)


def _write_table(store, table, model, layers, view, model_spec, out) -> None:
    import numpy as np

    from biointerp.tables import make_scores_adata, provenance, write_scores

    idx = store.index.set_index("variant_id")
    table = table.copy()
    known = table["variant_id"].isin(idx.index)
    table.loc[known, "status"] = idx.loc[table.loc[known, "variant_id"], "status"].to_numpy()
    obsm = {}
    ids, tensors = store.read([f"emb.{lay}.{view}" for lay in layers])
    row = {v: i for i, v in enumerate(ids)}
    take = np.array([row.get(v, -1) for v in table["variant_id"]])
    for lay in layers:
        arr = np.full((len(table), model.d_model), np.nan, dtype=np.float32)
        if len(ids):
            src = tensors[f"emb.{lay}.{view}"].float().numpy()
            arr[take >= 0] = src[take[take >= 0]]
        obsm[f"X_{model.name}_{lay}_{view}".replace("/", "_")] = arr
    uns = provenance(step="harvest", model=model_spec, model_name=model.name, layers=layers, view=view,
                     store=str(store.path))
    uns = {k: v for k, v in uns.items() if v is not None}
    write_scores(make_scores_adata(table, None, obsm=obsm, uns=uns), out)
    click.echo(f"wrote {out}")
