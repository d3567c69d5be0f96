"""Variant database: build an embedded DuckDB file from scores tables, query it,
annotate VCFs with it, export it (Parquet, bgzip+tabix TSV) and serve it read-only.

>>> import biointerp.db as vdb
>>> vdb.build(["scores.h5ad"], "variants.duckdb")          # doctest: +SKIP
>>> vdb.open("variants.duckdb").query(gene="BRCA1", top=10)  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

from biointerp.db.build import build, export_parquet, export_tsv
from biointerp.db.query import QueryError, Result, VariantDB, parse_region


#: Inputs with more head columns than this are indexed with the wide layout by default.
WIDE_THRESHOLD = 512


def is_wide_source(source: str | Path) -> bool:
    """True for release forms the wide layout reads in place: URLs, shard globs, ``manifest.json``,
    folders with a manifest, or Parquet more than :data:`WIDE_THRESHOLD` columns wide."""
    from biointerp.db.release import is_remote

    s = str(source)
    if is_remote(s) or any(ch in s for ch in "*?[") or s.endswith(".json"):
        return True
    p = Path(s)
    if p.is_dir() and (p / "manifest.json").exists():
        return True
    first = next(iter(sorted(p.glob("*.parquet"))), None) if p.is_dir() else p if p.suffix == ".parquet" else None
    if first is None:
        return False
    import pyarrow.parquet as pq

    return len(pq.read_schema(first)) > WIDE_THRESHOLD


def open(path: str | Path, **wide_kw) -> VariantDB:  # noqa: A001 - mirrors the CLI verb
    """Open a variant database read-only; see :class:`VariantDB`.

    ``path`` may also be a release as it is: a folder of Parquet shards (ours or EVEE's), a
    ``manifest.json``, a shard glob or an ``s3://`` / ``https://`` location. It is then indexed
    into a temporary database first (deleted on ``close()``): the wide layout (heads read in
    place, see :mod:`biointerp.db.wide`) for wide or remote releases, else a full build. For
    repeated use build once with :func:`build` / ``biointerp db build``.
    """
    s = str(path)
    p = Path(s)
    if is_wide_source(s) or p.is_dir() or p.suffix.lower() == ".parquet":
        import shutil
        import tempfile

        tmp = Path(tempfile.mkdtemp(prefix="biointerp_db_"))
        try:
            if is_wide_source(s):
                from biointerp.db.wide import build_wide

                build_wide(s, tmp / "variants.duckdb", **wide_kw)
            else:
                build([p], tmp / "variants.duckdb", fingerprint=False)
            db = VariantDB(tmp / "variants.duckdb")
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        db._cleanup = tmp
        return db
    return VariantDB(p)


def __getattr__(name: str):
    """``annotate`` / ``annotate_vcf`` (:func:`biointerp.db.annotation.annotate_vcf`), imported on first
    use: the VCF annotator loads NumPy and Arrow, which ``biointerp db query`` does not need."""
    if name in ("annotate", "annotate_vcf"):
        from biointerp.db.annotation import annotate_vcf

        return annotate_vcf
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["build", "open", "is_wide_source", "annotate", "annotate_vcf", "export_parquet", "export_tsv", "VariantDB", "QueryError", "Result",
           "parse_region"]
