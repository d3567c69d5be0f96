"""Train / validation / test splits that do not leak.

Every function returns a ``pandas.Series`` of ``"train" | "val" | "test"``
aligned with its input, so it can go straight into ``obs["split"]``.

- :func:`split_by_gene`: whole genes are held out (no gene in two splits).
  Rows without a gene are grouped by 1 Mb bin of their position (or by their own
  id when no position is known), so neighbours without a gene do not straddle splits.
- :func:`split_by_chrom`: whole chromosomes are held out.
- :func:`split_from_column`: a user column already naming the split.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

SPLITS = ("train", "val", "test")


def _group_split(groups: pd.Series, test_frac: float, val_frac: float, seed: int) -> pd.Series:
    if not (0 <= test_frac < 1 and 0 <= val_frac < 1 and test_frac + val_frac < 1):
        raise ValueError(f"test_frac={test_frac} and val_frac={val_frac} must be in [0, 1) and sum to < 1")
    uniq = np.array(sorted(groups.unique()))
    rng = np.random.default_rng(seed)
    rng.shuffle(uniq)
    n = len(uniq)
    n_test = int(round(test_frac * n))
    n_val = int(round(val_frac * n))
    if test_frac > 0 and n_test == 0 and n >= 2:
        n_test = 1
    if val_frac > 0 and n_val == 0 and n - n_test >= 2:
        n_val = 1
    assign = {g: "test" for g in uniq[:n_test]}
    assign.update({g: "val" for g in uniq[n_test:n_test + n_val]})
    assign.update({g: "train" for g in uniq[n_test + n_val:]})
    return groups.map(assign).astype(str)


def gene_groups(table: pd.DataFrame, gene_column: str = "gene") -> pd.Series:
    """Grouping key per row: the gene, or ``nogene:<chrom>:<Mb bin>`` when it is missing."""
    if gene_column not in table.columns:
        raise KeyError(f"no {gene_column!r} column for a gene split; columns are {list(table.columns)}")
    gene = table[gene_column].astype("string").str.strip()
    missing = gene.isna() | (gene == "") | (gene.str.lower().isin(["nan", "none", "."]))
    if missing.any():
        if {"chrom", "pos"} <= set(table.columns):
            fill = "nogene:" + table["chrom"].astype(str) + ":" + (pd.to_numeric(table["pos"]) // 1_000_000).astype(str)
        else:
            fill = "nogene:" + pd.Series(table.index.astype(str), index=table.index)
        gene = gene.where(~missing, fill)
    # multi-gene annotations ("BRCA1|NBR2"): group by the first gene
    return gene.str.split(r"[|,;&]").str[0].astype(str)


def split_by_gene(table: pd.DataFrame, test_frac: float = 0.2, val_frac: float = 0.1, seed: int = 0,
                  gene_column: str = "gene") -> pd.Series:
    """Hold out ``test_frac`` / ``val_frac`` of the genes (by gene count, random with ``seed``)."""
    return _group_split(gene_groups(table, gene_column), test_frac, val_frac, seed)


def split_by_chrom(table: pd.DataFrame, test_chroms: Sequence[str] = (), val_chroms: Sequence[str] = (),
                   test_frac: float = 0.2, val_frac: float = 0.1, seed: int = 0) -> pd.Series:
    """Hold out named chromosomes, or a random fraction of them when none are named."""
    if "chrom" not in table.columns:
        raise KeyError("no 'chrom' column for a chromosome split")
    chrom = table["chrom"].astype(str)
    if not test_chroms and not val_chroms:
        return _group_split(chrom, test_frac, val_frac, seed)
    norm = lambda c: str(c).removeprefix("chr")  # noqa: E731
    key = chrom.map(norm)
    out = pd.Series("train", index=table.index)
    out[key.isin({norm(c) for c in val_chroms})] = "val"
    out[key.isin({norm(c) for c in test_chroms})] = "test"
    return out


def split_from_column(table: pd.DataFrame, column: str) -> pd.Series:
    """Use a column whose values are train / val / test (``valid``/``validation`` accepted)."""
    if column not in table.columns:
        raise KeyError(f"split column {column!r} not found; columns are {list(table.columns)}")
    s = table[column].astype("string").str.strip().str.lower()
    s = s.replace({"valid": "val", "validation": "val", "training": "train", "testing": "test"})
    bad = sorted(set(s.dropna().unique()) - set(SPLITS))
    if bad:
        raise ValueError(f"split column {column!r} has values {bad[:5]}; expected train / val / test")
    return s.fillna("train").astype(str)


def make_split(table: pd.DataFrame, how: str = "gene", test_frac: float = 0.2, val_frac: float = 0.1,
               seed: int = 0, test_chroms: Sequence[str] = (), val_chroms: Sequence[str] = ()) -> pd.Series:
    """Dispatch: ``how`` = ``gene``, ``chrom``, ``random`` (per row; leaks, for comparison
    only) or ``column:<name>``."""
    if how == "gene":
        return split_by_gene(table, test_frac, val_frac, seed)
    if how == "chrom":
        return split_by_chrom(table, test_chroms, val_chroms, test_frac, val_frac, seed)
    if how == "random":
        return _group_split(pd.Series(np.arange(len(table)), index=table.index), test_frac, val_frac, seed)
    if how.startswith("column:"):
        return split_from_column(table, how.split(":", 1)[1])
    raise ValueError(f"unknown split {how!r}; use gene, chrom, random or column:<name>")


def check_no_leak(groups: pd.Series, split: pd.Series) -> list[str]:
    """Groups (e.g. genes) that appear in more than one split (empty list = no leak)."""
    df = pd.DataFrame({"g": groups.to_numpy(), "s": split.to_numpy()})
    n = df.groupby("g")["s"].nunique()
    return sorted(n[n > 1].index.astype(str))
