"""``biointerp db``: build, query, annotate, export and serve the variant database."""

from __future__ import annotations

import json
from pathlib import Path

import click

DB_OPT = click.option("--db", "db_path", required=True, envvar="BIOINTERP_DB", show_envvar=True,
                      type=click.Path(path_type=Path),
                      help="Variant database file (.duckdb), or a release as it is (folder of shards, "
                           "manifest.json, shard glob, s3:// or https:// location; indexed on the fly).")


def _open(db_path: Path):
    from biointerp.db import VariantDB, is_wide_source
    from biointerp.db import open as open_db

    s = str(db_path)
    if s.startswith(("s3:/", "http:/", "https:/")):  # click.Path squashes '//'
        s = s.replace(":/", "://", 1) if "://" not in s else s
    try:
        if is_wide_source(s) or db_path.is_dir() or db_path.suffix.lower() == ".parquet":
            return open_db(s)
        if not db_path.exists():
            raise click.ClickException(f"{db_path}: no such database; build one with `biointerp db build`.")
        return VariantDB(db_path)
    except click.ClickException:
        raise
    except Exception as err:  # duckdb raises several error types for a non-database file
        raise click.ClickException(f"{db_path}: cannot open as a variant database ({err}).") from None


def _db_file(db_path: Path) -> None:
    """Commands that reopen the database by path need a built .duckdb file, not a release."""
    if db_path.is_dir() or db_path.suffix.lower() in (".parquet", ".json") or "://" in str(db_path) \
            or str(db_path).startswith(("s3:/", "http:/", "https:/")):
        raise click.ClickException(f"{db_path}: this command needs a database file; index the release first "
                                   "with `biointerp db build RELEASE -o variants.duckdb`.")
    _open(db_path).close()


@click.group()
def db() -> None:
    """Variant database: build from scores tables, query, annotate VCFs, export, serve."""


@db.command()
@click.argument("inputs", nargs=-1, required=True)
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
@click.option("--layout", type=click.Choice(["auto", "narrow", "wide"]), default="auto", show_default=True,
              help="narrow: all heads copied into the database; wide: keys, score and index in the database, "
                   "heads read from the release (auto: wide for releases over 512 columns, manifests, globs, URLs).")
@click.option("--head-store", type=click.Choice(["inplace", "packed"]), default="inplace", show_default=True,
              help="Wide layout: read heads from the shards in place, or re-encode them once into OUT.heads.")
@click.option("--heads-meta", default=None,
              help="Head metadata (EVEE's heads.feather); default: heads.feather beside the shards.")
@click.option("-f", "--force", is_flag=True, help="Overwrite existing outputs.")
def build(inputs, out, score_column, heads, zero_based, kind, model, probe, export_parquet, export_tsv,
          no_fingerprint, layout, head_store, heads_meta, force) -> None:
    """Build a database from INPUTS: .h5ad scores tables, Parquet files, folders of shards, or a
    release as it is (folder with manifest.json, shard glob in quotes, s3:// or https:// location)."""
    from biointerp.db import build as build_db
    from biointerp.db import export_parquet as exp_pq
    from biointerp.db import export_tsv as exp_tsv
    from biointerp.db import is_wide_source

    if out.exists() and not force:
        raise click.ClickException(f"{out} exists; pass --force to replace it.")
    try:
        wide = layout == "wide" or (layout == "auto" and len(inputs) == 1 and is_wide_source(inputs[0]))
        if wide:
            from biointerp.db.wide import build_wide

            if len(inputs) != 1:
                raise ValueError("the wide layout takes one release (a folder, manifest.json, glob or URL)")
            meta = build_wide(inputs[0], out, heads_meta=heads_meta, store=head_store, score_column=score_column,
                              heads=list(heads) or None, zero_based=zero_based, kind=kind, model=model,
                              probe=probe, overwrite=force, progress=True)
            if export_parquet or export_tsv:
                raise ValueError("exports need the narrow layout (--layout narrow)")
        else:
            for p in inputs:
                if not Path(p).exists():
                    raise FileNotFoundError(f"{p}: no such file or folder")
            meta = build_db([Path(p) for p in inputs], out, score_column=score_column, heads=list(heads) or None,
                            zero_based=zero_based, kind=kind, model=model, probe=probe, overwrite=force,
                            fingerprint=not no_fingerprint, progress=True)
        if export_parquet:
            exp_pq(out, export_parquet, overwrite=force)
        if export_tsv:
            export_tsv = exp_tsv(out, export_tsv, overwrite=force)
    except (ValueError, OSError) as err:  # OSError: FileNotFoundError, FileExistsError, S3/HTTP errors
        raise click.ClickException(str(err)) from None
    size = out.stat().st_size + (Path(str(out) + ".heads").stat().st_size if meta.get("head_store") == "packed" else 0)
    lay = f"wide layout, heads {meta['head_store']}" if meta.get("layout") == "wide" else "narrow layout"
    click.echo(f"{out}: {meta['n_rows']:,} variants, {len(meta['heads'])} heads ({lay}), "
               f"score from {meta['score_source'] or 'none'}; {size / 1e6:.1f} MB")
    if meta.get("layout") == "wide":
        rg = [r for sh in meta["shard_row_groups"] for r in sh]
        click.echo(f"  release: {len(meta['shards'])} shards, {len(rg)} row groups of up to {max(rg, default=0):,} rows; "
                   + ("an all-heads look-up decodes one row group of the release (see --head-store packed)"
                      if meta["head_store"] == "inplace" else f"packed heads: {out}.heads"), err=True)
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
    _emit_text(text, len(df), out)


def _emit_text(text: str, n_rows: int, out: Path | None) -> None:
    if out is None:
        click.echo(text)
    else:
        out.write_text(text + ("\n" if not text.endswith("\n") else ""))
        click.echo(f"{n_rows} rows -> {out}", err=True)


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
@click.option("--profile", is_flag=True, help="With VARIANT: one row per head (value, display name, group, "
              "description, category, threshold from the release's head metadata).")
@click.option("--format", "fmt", type=click.Choice(["table", "tsv", "json", "parquet"]), default="table",
              show_default=True)
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write here instead of stdout.")
def query(db_path, variant, region, gene, rsid, top, limit, min_score, max_score, zero_based, heads, profile, fmt,
          out) -> None:
    """Look up VARIANT (any id form: chr17:43045712:T:C, 17-43045712-T-C), or --region/--gene/--rsid."""
    from biointerp.db import QueryError

    if sum(x is not None for x in (variant, region, gene, rsid)) != 1:
        raise click.UsageError("give exactly one of VARIANT, --region, --gene, --rsid.")
    if top is not None and gene is None:
        raise click.UsageError("--top goes with --gene.")
    h = True if heads == "all" else False if heads in ("none", "") else [x.strip() for x in heads.split(",")]
    if profile and variant is None:
        raise click.UsageError("--profile goes with VARIANT.")
    vdb = _open(db_path)
    try:
        if profile:
            df = vdb.profile(variant, zero_based=zero_based, heads=h or True)
        else:
            res = vdb.query_result(variant, region=region, gene=gene, rsid=rsid, top=top, min_score=min_score,
                                   max_score=max_score, zero_based=zero_based, heads=h, limit=limit)
            if fmt == "table":  # the common case prints without importing pandas (same text)
                from biointerp.db.textfmt import to_string

                text = to_string(res.columns, res.rows) if res.rows else "(no rows)"
                if text is not None:
                    _emit_text(text, len(res.rows), out)
                    return
            df = res.frame()
    except QueryError as err:
        raise click.UsageError(str(err)) from None
    finally:
        vdb.close()
    _emit(df, fmt, out)


@db.command()
@DB_OPT
@click.option("--heads", default="all", show_default=True, help="'all' or a comma list of head columns.")
@click.option("--format", "fmt", type=click.Choice(["table", "tsv", "json"]), default="table", show_default=True)
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write here instead of stdout.")
def heads(db_path, heads, fmt, out) -> None:
    """List head columns with their metadata (display name, group, description, category, threshold)."""
    from biointerp.db import QueryError

    vdb = _open(db_path)
    try:
        df = vdb.head_info(True if heads == "all" else [x.strip() for x in heads.split(",")])
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
    from biointerp.db.annotation import annotate_vcf

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
    _db_file(db_path)
    try:
        if parquet:
            export_parquet(db_path, parquet, overwrite=force)
            click.echo(f"Parquet: {parquet}/chrom=*/")
        if tsv:
            p = export_tsv(db_path, tsv, heads=list(heads) or None, overwrite=force)
            click.echo(f"TSV: {p} (+ .tbi)")
    except (FileExistsError, ValueError) as err:
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
@click.option("--explanations", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Side table of `biointerp features explain` (.parquet): the page shows each variant's top features.")
def serve(db_path, host, port, max_results, max_region_bp, workers, access_log, explanations) -> None:
    """Serve the database read-only: the browser page at / and a JSON API (docs at /docs)."""
    try:
        from biointerp.db.serve import default_workers
        from biointerp.db.serve import serve as run
    except ImportError as err:
        raise click.ClickException(str(err)) from None
    _db_file(db_path)
    if explanations is not None:
        from biointerp.db.browse import Explanations

        try:
            Explanations(explanations)
        except Exception as err:  # duckdb/arrow raise several types for a non-Parquet file
            raise click.ClickException(f"{explanations}: cannot read as an explanations table ({err}).") from None
    workers = workers or default_workers()
    click.echo(f"Serving {db_path} read-only at http://{host}:{port}/ (page), /docs (API); "
               f"{workers} worker{'s' if workers > 1 else ''}; Ctrl+C stops.", err=True)
    try:
        run(db_path, host=host, port=port, max_results=max_results, max_region_bp=max_region_bp, workers=workers,
            access_log=access_log, explanations=explanations)
    except ImportError as err:
        raise click.ClickException(f"{err}; install with: pip install 'biointerp[server]'") from None
