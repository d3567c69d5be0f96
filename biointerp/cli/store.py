"""``biointerp store info|verify``: inspect and check an activation store."""

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
    """Manifest, variant counts per status, shards and size of the store at PATH."""
    s = _open(path).info()
    if as_json:
        click.echo(json.dumps(s, indent=2, default=str))
        return
    m = s["manifest"]
    click.echo(f"store      {s['path']}")
    click.echo(f"model      {m.get('model')}  layers {m.get('layers')}  view {m.get('view')}  "
               f"K {m.get('K')}  d {m.get('d')}  dtype {m.get('dtype')}")
    click.echo(f"window     {m.get('window')}")
    click.echo(f"variants   {s['n_variants']}  {s['status_counts']}")
    click.echo(f"shards     {s['n_shards']}  tensors {', '.join(s['tensors'])}")
    click.echo(f"size       {s['bytes'] / 1e6:.2f} MB, {s['bytes_per_variant'] / 1e3:.1f} kB per stored variant")


@store.command("verify")
@click.argument("path", type=click.Path(exists=True, file_okay=False))
def verify(path: str) -> None:
    """Check every shard's checksum, row counts and the index; exit 1 on any problem."""
    problems = _open(path).verify()
    if problems:
        for p in problems:
            click.echo(f"problem: {p}", err=True)
        raise click.ClickException(f"{len(problems)} problem(s) in {path}; rerun the harvest command "
                                   "to resume/repair, or delete the store and harvest again")
    click.echo(f"{path}: ok")
