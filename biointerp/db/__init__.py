"""Variant database: build an embedded DuckDB file from scores tables, query it,
annotate VCFs with it, export it (Parquet, bgzip+tabix TSV) and serve it read-only.

>>> import biointerp.db as vdb
>>> vdb.build(["scores.h5ad"], "variants.duckdb")          # doctest: +SKIP
>>> vdb.open("variants.duckdb").query(gene="BRCA1", top=10)  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

from biointerp.db.annotate import annotate_vcf
from biointerp.db.build import build, export_parquet, export_tsv
from biointerp.db.query import QueryError, Result, VariantDB, parse_region


def open(path: str | Path) -> VariantDB:  # noqa: A001 - mirrors the CLI verb
    """Open a variant database read-only; see :class:`VariantDB`.

    ``path`` may also be a Parquet file or a folder of Parquet shards (ours or EVEE's
    release): they are then built into a temporary database first (deleted on ``close()``);
    for repeated use build once with :func:`build` / ``biointerp db build``.
    """
    p = Path(path)
    if p.is_dir() or p.suffix.lower() == ".parquet":
        import shutil
        import tempfile

        tmp = Path(tempfile.mkdtemp(prefix="biointerp_db_"))
        try:
            build([p], tmp / "variants.duckdb", fingerprint=False)
            db = VariantDB(tmp / "variants.duckdb")
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        db._cleanup = tmp
        return db
    return VariantDB(p)


#: ``annotate(db, vcf_in, vcf_out, heads=(), prefix="BI_")``; bound after the submodule import so
#: the name refers to the function, not to the ``biointerp.db.annotate`` module.
annotate = annotate_vcf


__all__ = ["build", "open", "annotate", "annotate_vcf", "export_parquet", "export_tsv", "VariantDB", "QueryError", "Result",
           "parse_region"]
