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
    """Open a variant database read-only; see :class:`VariantDB`."""
    return VariantDB(path)


#: ``annotate(db, vcf_in, vcf_out, heads=(), prefix="BI_")``; bound after the submodule import so
#: the name refers to the function, not to the ``biointerp.db.annotate`` module.
annotate = annotate_vcf


__all__ = ["build", "open", "annotate", "annotate_vcf", "export_parquet", "export_tsv", "VariantDB", "QueryError", "Result",
           "parse_region"]
