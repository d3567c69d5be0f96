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


def open(path: str | Path) -> VariantDB:  # noqa: A001 - mirrors the CLI verb
    """Open a variant database read-only; see :class:`VariantDB`."""
    return VariantDB(path)


def annotate(*args, **kwargs):
    """Annotate a VCF from a database; see :func:`biointerp.db.annotate.annotate_vcf`."""
    from biointerp.db.annotate import annotate_vcf

    return annotate_vcf(*args, **kwargs)


__all__ = ["build", "open", "annotate", "export_parquet", "export_tsv", "VariantDB", "QueryError", "Result",
           "parse_region"]
