"""``biointerp db``: build, query, annotate, export and serve the variant database."""

from __future__ import annotations

import json
from pathlib import Path

import click

DB_OPT = click.option("--db", "db_path", required=True, envvar="BIOINTERP_DB", show_envvar=True,
                      type=click.Path(dir_okay=False, path_type=Path), help="Variant database file (.duckdb).")


def _open(db_path: Path):
    from biointerp.db import VariantDB

    if not db_path.exists():
        raise click.ClickException(f"{db_path}: no such database; build one with `biointerp db build`.")
    try:
        return VariantDB(db_path)
    except Exception as err:  # duckdb raises several error types for a non-database file
        raise click.ClickException(f"{db_path}: cannot open as a variant database ({err}).") from None


@click.group()
def db() -> None:
    """Variant database: build from scores tables, query, annotate VCFs, export, serve."""


@db.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Database file to write, e.g. variants.duckdb.")
@click.option("--score-column", default=None, help="Input column used as the primary score "
              "(default: pathogenicity, score or delta_ll).")
@click.option("--heads", multiple=True, help="Glob of head columns to keep (repeatable; default: all numeric).")
@click.option("--zero-based-ids/--one-based-ids", "zero_based", default=None,
              help="Positions in input variant_id are 0-based (default: only for EVEE-schema inputs).")
@click.option("--kind", type=click.Choice(["ours", "evee", "table"]), default=None, help="Force the input schema.")
@click.option("--model", default=None, help="Model name recorded as provenance.")
@click.option("--probe", default=None, help="Probe name/path recorded as provenance.")
@click.option("--export-parquet", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also export Parquet partitioned by chromosome to this folder.")
@click.option("--export-tsv", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also export a bgzip+tabix TSV (.tsv.gz).")
@click.option("--no-fingerprint", is_flag=True, help="Skip sha256 fingerprints of the inputs.")
@click.option("-f", "--force", is_flag=True, help="Overwrite existing outputs.")
def build(inputs, out, score_column, heads, zero_based, kind, model, probe, export_parquet, export_tsv,
          no_fingerprint, force) -> None:
    """Build a database from INPUTS (.h5ad scores tables, Parquet files or folders of EVEE shards)."""
    from biointerp.db import build as build_db
    from biointerp.db import export_parquet as exp_pq
    from biointerp.db import export_tsv as exp_tsv

    if out.exists() and not force:
        raise click.ClickException(f"{out} exists; pass --force to replace it.")
    try:
        meta = build_db(list(inputs), out, score_column=score_column, heads=list(heads) or None,
                        zero_based=zero_based, kind=kind, model=model, probe=probe, overwrite=force,
                        fingerprint=not no_fingerprint, progress=True)
        if export_parquet:
            exp_pq(out, export_parquet, overwrite=force)
        if export_tsv:
            export_tsv = exp_tsv(out, export_tsv, overwrite=force)
    except (ValueError, FileNotFoundError, FileExistsError) as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"{out}: {meta['n_rows']:,} variants, {len(meta['heads'])} heads, "
               f"score from {meta['score_source'] or 'none'}; {out.stat().st_size / 1e6:.1f} MB")
    for inp in meta["inputs"]:
        if inp.get("ignored_columns"):
            click.echo(f"  {inp['path']}: columns not kept: {', '.join(inp['ignored_columns'][:20])}", err=True)
    if meta["n_duplicate_ids"]:
        click.echo(f"  note: {meta['n_duplicate_ids']} variant ids occur more than once (all rows kept)", err=True)
    if export_parquet:
        click.echo(f"  Parquet export: {export_parquet}/chrom=*/")
    if export_tsv:
        click.echo(f"  TSV export: {export_tsv} (+ .tbi)")


def _emit(df, fmt: str, out: Path | None) -> None:
    if fmt == "parquet":
        if out is None:
            raise click.UsageError("--format parquet needs -o/--out FILE.")
        df.to_parquet(out, index=False)
        click.echo(f"{len(df)} rows -> {out}", err=True)
        return
    if fmt == "json":
        text = df.to_json(orient="records", indent=None)
    elif fmt == "tsv":
        text = df.to_csv(sep="\t", index=False, na_rep=".")
    else:
        text = df.to_string(index=False, max_colwidth=40) if len(df) else "(no rows)"
    if out is None:
        click.echo(text)
    else:
        out.write_text(text + ("\n" if not text.endswith("\n") else ""))
        click.echo(f"{len(df)} rows -> {out}", err=True)


@db.command()
@DB_OPT
@click.argument("variant", required=False)
@click.option("--region", default=None, help="chrom:start-end, 1-based inclusive (e.g. 17:43044295-43125483).")
@click.option("--gene", default=None, help="Gene symbol.")
@click.option("--rsid", default=None, help="dbSNP id, e.g. rs80357906.")
@click.option("--top", type=click.IntRange(min=1), default=None, help="With --gene: N highest scores.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most this many rows.")
@click.option("--min-score", type=float, default=None)
@click.option("--max-score", type=float, default=None)
@click.option("--zero-based", is_flag=True, help="Read VARIANT's position as 0-based (EVEE ids).")
@click.option("--heads", default="all", show_default=True, help="'all', 'none' or a comma list of head columns.")
@click.option("--format", "fmt", type=click.Choice(["table", "tsv", "json", "parquet"]), default="table",
              show_default=True)
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write here instead of stdout.")
def query(db_path, variant, region, gene, rsid, top, limit, min_score, max_score, zero_based, heads, fmt, out) -> None:
    """Look up VARIANT (any id form: chr17:43045712:T:C, 17-43045712-T-C), or --region/--gene/--rsid."""
    from biointerp.db import QueryError

    if sum(x is not None for x in (variant, region, gene, rsid)) != 1:
        raise click.UsageError("give exactly one of VARIANT, --region, --gene, --rsid.")
    if top is not None and gene is None:
        raise click.UsageError("--top goes with --gene.")
    h = True if heads == "all" else False if heads in ("none", "") else [x.strip() for x in heads.split(",")]
    vdb = _open(db_path)
    try:
        df = vdb.query(variant, region=region, gene=gene, rsid=rsid, top=top, min_score=min_score,
                       max_score=max_score, zero_based=zero_based, heads=h, limit=limit)
    except QueryError as err:
        raise click.UsageError(str(err)) from None
    finally:
        vdb.close()
    _emit(df, fmt, out)


@db.command()
@DB_OPT
@click.argument("vcf", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Output VCF (bgzip-compressed, e.g. out.vcf.gz).")
@click.option("--heads", default="", help="Comma list of head columns to add as INFO fields.")
@click.option("--prefix", default="BI_", show_default=True, help="INFO key prefix.")
@click.option("--index", is_flag=True, help="Also write a tabix index (input must be sorted).")
@click.option("--level", type=click.IntRange(0, 9), default=1, show_default=True, help="BGZF compression level.")
@click.option("--summary", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the summary counts as JSON here.")
def annotate(db_path, vcf, out, heads, prefix, index, level, summary) -> None:
    """Add score/label (and chosen heads) INFO fields to VCF; unmatched records pass through unchanged."""
    from biointerp.db.annotate import annotate_vcf

    vdb = _open(db_path)
    try:
        s = annotate_vcf(vdb, vcf, out, heads=[h.strip() for h in heads.split(",") if h.strip()],
                         prefix=prefix, index=index, level=level, progress=True)
    except ValueError as err:
        raise click.ClickException(f"{vcf}: {err}") from None
    finally:
        vdb.close()
    click.echo(f"{out}: {s['records']:,} records, {s['annotated_records']:,} annotated, "
               f"{s['unmatched_records']:,} not in the database (passed through), "
               f"{s['unknown_contig_records']:,} on contigs absent from it; "
               f"{s['records_per_s']:,.0f} records/s")
    if summary:
        summary.write_text(json.dumps(s, indent=2))


@db.command()
@DB_OPT
@click.option("--parquet", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for Parquet partitioned by chromosome.")
@click.option("--tsv", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="bgzip+tabix TSV path (.tsv.gz).")
@click.option("--heads", multiple=True, help="Glob of head columns in the TSV (repeatable; default: all).")
@click.option("-f", "--force", is_flag=True, help="Overwrite existing outputs.")
def export(db_path, parquet, tsv, heads, force) -> None:
    """Export the database as Parquet (by chromosome) and/or a bgzip+tabix TSV."""
    from biointerp.db import export_parquet, export_tsv

    if not parquet and not tsv:
        raise click.UsageError("give --parquet DIR and/or --tsv FILE.tsv.gz.")
    _open(db_path).close()
    try:
        if parquet:
            export_parquet(db_path, parquet, overwrite=force)
            click.echo(f"Parquet: {parquet}/chrom=*/")
        if tsv:
            p = export_tsv(db_path, tsv, heads=list(heads) or None, overwrite=force)
            click.echo(f"TSV: {p} (+ .tbi)")
    except FileExistsError as err:
        raise click.ClickException(str(err)) from None


@db.command()
@DB_OPT
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface (loopback by default).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--max-results", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Cap on rows per response.")
@click.option("--max-region-bp", type=click.IntRange(min=1), default=5_000_000, show_default=True,
              help="Widest region accepted.")
@click.option("--workers", type=click.IntRange(1, 64), default=None,
              help="Server processes sharing the port (default: one per CPU, at most 4).")
@click.option("--access-log/--no-access-log", default=False, show_default=True, help="Log every request.")
def serve(db_path, host, port, max_results, max_region_bp, workers, access_log) -> None:
    """Serve the database read-only: the browser page at / and a JSON API (docs at /docs)."""
    try:
        from biointerp.db.serve import default_workers
        from biointerp.db.serve import serve as run
    except ImportError as err:
        raise click.ClickException(str(err)) from None
    _open(db_path).close()
    workers = workers or default_workers()
    click.echo(f"Serving {db_path} read-only at http://{host}:{port}/ (page), /docs (API); "
               f"{workers} worker{'s' if workers > 1 else ''}; Ctrl+C stops.", err=True)
    try:
        run(db_path, host=host, port=port, max_results=max_results, max_region_bp=max_region_bp, workers=workers,
            access_log=access_log)
    except ImportError as err:
        raise click.ClickException(f"{err}; install with: pip install 'biointerp[server]'") from None
