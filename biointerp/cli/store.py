"""``biointerp store info|verify|repair``: inspect, check and repair an activation store."""

from __future__ import annotations

import json

import click

def _open(path: str):
    from biointerp.store import ActivationStore, StoreError

    try:
        return ActivationStore.open(path)
    except StoreError as err:
        raise click.ClickException(str(err)) from err


@click.group("store")
def store() -> None:
    """Activation stores written by `biointerp harvest`."""


@store.command("info")
@click.argument("path", type=click.Path(exists=True, file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def info(path: str, as_json: bool) -> None:
    """Manifest, variant counts per status, shards and size of the store at PATH.

    Checks the manifest, the index and the first shard it reads (its checksum);
    `store verify` checks every shard.
    """
    from biointerp.store import StoreError

    try:
        s = _open(path).info()
    except StoreError as err:
        raise click.ClickException(str(err)) from err
    if as_json:
        click.echo(json.dumps(s, indent=2, default=str))
        return
    m = s["manifest"]
    click.echo(f"store      {s['path']}")
    click.echo(f"model      {m.get('model')}  layers {m.get('layers')}  view {m.get('view')}  "
               f"K {m.get('K')}  d {m.get('d')}  dtype {m.get('dtype')}")
    click.echo(f"window     {m.get('window')}")
    if str(m.get("view", "")).startswith("evee"):
        from biointerp.store import store_recipe

        legacy = "" if m.get("recipe") else " (no recipe field: written before recipes existed, read as genomic)"
        click.echo(f"recipe     {store_recipe(m)}{legacy}  views {m.get('views')}")
    click.echo(f"variants   {s['n_variants']}  {s['status_counts']}")
    click.echo(f"shards     {s['n_shards']}  tensors {', '.join(s['tensors'])}")
    click.echo(f"size       {s['bytes'] / 1e6:.2f} MB, {s['bytes_per_variant'] / 1e3:.1f} kB per stored variant")


@store.command("verify")
@click.argument("path", type=click.Path(exists=True, file_okay=False))
def verify(path: str) -> None:
    """Check every shard's checksum, row counts and the index; exit 1 on any problem."""
    from biointerp.store import repair_hint

    problems = _open(path).verify(progress=True)
    if problems:
        for p in problems:
            click.echo(f"problem: {p}", err=True)
        raise click.ClickException(f"{len(problems)} problem(s) in {path}; {repair_hint(path)}")
    click.echo(f"{path}: ok")


@store.command("repair")
@click.argument("path", type=click.Path(exists=True, file_okay=False))
def repair(path: str) -> None:
    """Drop damaged shards (missing, or failing their checksum) from the store at PATH.

    Their variants stay in the index with status `damaged` and no tensors, so
    readers refuse the store until they are recomputed. Then rerun the harvest
    command that made the store, with the same options plus --repair: it
    recomputes exactly those variants into the same shard and index rows.
    `biointerp harvest ... --repair` does both steps in one go.
    """
    st = _open(path)
    dropped = st.mark_damaged(progress=True)
    todo = st.damaged_ids
    for shard, ids in dropped.items():
        click.echo(f"dropped shard {shard} ({len(ids)} variants)")
    if not todo:
        click.echo(f"{path}: no damaged shards")
        return
    click.echo(f"{len(todo)} variants await recompute: rerun the harvest command with --store {path} --repair "
               "(same --model, --fasta, --variants and options)")
