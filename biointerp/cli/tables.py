"""``biointerp tables merge|show``: combine and inspect AnnData scores tables."""

from __future__ import annotations

import click


def _read(path: str):
    from biointerp.tables import read_scores

    try:
        return read_scores(path)
    except Exception as err:  # noqa: BLE001 - unreadable input is a user error
        raise click.ClickException(f"{path}: cannot read as an AnnData .h5ad table ({err})") from err


@click.group("tables")
def tables() -> None:
    """AnnData scores tables (.h5ad)."""


@tables.command("merge")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Merged table (.h5ad or .parquet).")
def merge(inputs: tuple[str, ...], out: str) -> None:
    """Concatenate per-shard tables (e.g. from `score --shard I --n-shards N`) in the given order."""
    from biointerp.tables import concat_scores, write_scores

    parts = [_read(p) for p in inputs]
    try:
        merged = concat_scores(parts)
    except ValueError as err:
        raise click.ClickException(f"cannot merge {', '.join(inputs)}: {err}") from err
    merged.uns["biointerp"]["merged_from"] = list(inputs)
    write_scores(merged, out)
    click.echo(f"wrote {out}: {merged.n_obs} variants x {merged.n_vars} scores from {len(inputs)} tables")


@tables.command("show")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("-n", "--rows", type=click.IntRange(0), default=10, show_default=True, help="Rows to print.")
def show(path: str, rows: int) -> None:
    """Summary and first rows of a scores table."""
    import pandas as pd

    from biointerp.tables import scores_frame

    a = _read(path)
    click.echo(f"{path}: {a.n_obs} variants x {a.n_vars} scores ({', '.join(map(str, a.var_names))})")
    if "status" in a.obs:
        click.echo("status: " + ", ".join(f"{k}={v}" for k, v in a.obs["status"].value_counts().items()))
    if len(a.obsm):
        click.echo("obsm: " + ", ".join(f"{k} {v.shape}" for k, v in a.obsm.items()))
    prov = a.uns.get("biointerp", {})
    if prov:
        click.echo("provenance: " + ", ".join(f"{k}={prov[k]}" for k in list(prov)[:12]))
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        click.echo(scores_frame(a).head(rows).to_string(index=False))
