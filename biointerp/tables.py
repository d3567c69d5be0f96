"""AnnData scores tables (scverse conventions, see DESIGN.md).

``obs``  one row per input variant, index ``variant_id``; columns chrom, pos,
         ref, alt, gene, consequence, label, status, status_detail, split.
``X``    float32 scores, ``var`` = score names (``delta_ll``, ``pathogenicity``...).
``obsm`` ``X_<model>_<layer>_<pooling>`` embeddings.
``uns["biointerp"]`` provenance (versions, model, layer, window, fingerprints).

Rows whose status is not ``ok`` stay in the table with NaN scores.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import importlib.metadata
import json
import platform
from collections.abc import Mapping, Sequence
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

OBS_COLUMNS = ["chrom", "pos", "ref", "alt", "gene", "consequence", "label", "status", "status_detail", "split"]


def file_fingerprint(path: str | Path, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes (first 16 hex digits), for provenance."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()[:16]


def provenance(**fields) -> dict:
    """Provenance dict for ``uns["biointerp"]``: versions, date, plus ``fields``."""
    import torch

    from biointerp import __version__

    out = {
        "biointerp_version": __version__,
        "torch_version": str(torch.__version__),
        "anndata_version": importlib.metadata.version("anndata"),
        "python_version": platform.python_version(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    out.update({k: _jsonable(v) for k, v in fields.items()})
    return out


def _jsonable(v):
    try:
        json.dumps(v)
        return v
    except TypeError:
        return str(v)


def make_scores_adata(
    variants: pd.DataFrame,
    scores: pd.DataFrame | Mapping[str, np.ndarray] | None = None,
    obsm: Mapping[str, np.ndarray] | None = None,
    uns: Mapping | None = None,
) -> ad.AnnData:
    """Build the scores AnnData from a variant table and score columns.

    Parameters
    ----------
    variants
        Variant table (one row per input record, ``variant_id`` column or index).
        Every row is kept, whatever its ``status``.
    scores
        ``n_variants`` rows of score columns aligned with ``variants`` (same
        order), e.g. ``{"delta_ll": array}``. Non-``ok`` rows are forced to NaN.
    obsm
        Embeddings, ``name -> [n_variants, d]`` arrays.
    uns
        Provenance stored under ``uns["biointerp"]``.

    Returns
    -------
    AnnData with ``n_obs = len(variants)``.
    """
    obs = variants.copy()
    if "variant_id" in obs.columns:
        obs = obs.set_index("variant_id", drop=True)
    obs.index = _unique_ids(obs.index.astype(str))
    obs.index.name = "variant_id"
    for col in OBS_COLUMNS:
        if col not in obs.columns:
            obs[col] = pd.NA if col not in ("status",) else "ok"
    obs = _clean_obs(obs)
    n = len(obs)
    if scores is None:
        scores = {}
    score_df = pd.DataFrame(dict(scores) if not isinstance(scores, pd.DataFrame) else scores)
    if len(score_df.columns) and len(score_df) != n:
        raise ValueError(f"scores have {len(score_df)} rows but the variant table has {n}")
    X = score_df.to_numpy(dtype=np.float32) if len(score_df.columns) else np.zeros((n, 0), dtype=np.float32)
    not_ok = (obs["status"].astype(str) != "ok").to_numpy()
    X[not_ok, :] = np.nan
    var = pd.DataFrame(index=pd.Index([str(c) for c in score_df.columns], name="score"))
    adata = ad.AnnData(X=X, obs=obs, var=var)
    for key, arr in (obsm or {}).items():
        arr = np.asarray(arr)
        if arr.shape[0] != n:
            raise ValueError(f"obsm[{key!r}] has {arr.shape[0]} rows, expected {n}")
        adata.obsm[key] = arr
    adata.uns["biointerp"] = dict(uns or {})
    return adata


def _unique_ids(index: pd.Index) -> pd.Index:
    """Keep ids unique (scverse convention): a repeated id (status ``duplicate``)
    gets ``#2``, ``#3``... after its canonical id; the first occurrence is unchanged."""
    if not index.has_duplicates:
        return index
    occurrence = index.to_series().groupby(index).cumcount().to_numpy()
    return pd.Index([i if k == 0 else f"{i}#{k + 1}" for i, k in zip(index, occurrence)])


def _clean_obs(obs: pd.DataFrame) -> pd.DataFrame:
    """Make obs columns h5ad-writable: object columns become strings (NA kept as "")."""
    for col in obs.columns:
        s = obs[col]
        if s.dtype == object or str(s.dtype).startswith("string"):
            obs[col] = s.astype("string").fillna("").astype(str)
    return obs


def add_scores(adata: ad.AnnData, scores: pd.DataFrame | Mapping[str, np.ndarray]) -> ad.AnnData:
    """Return a new AnnData with ``scores`` columns added (replacing same-named ones).

    ``scores`` is aligned by variant id when it is a DataFrame indexed by
    ``variant_id``, else by position. Non-``ok`` rows get NaN.
    """
    df = pd.DataFrame(scores) if not isinstance(scores, pd.DataFrame) else scores
    if df.index.name == "variant_id" or df.index.dtype == object:
        df = df.reindex(adata.obs_names)
    elif len(df) != adata.n_obs:
        raise ValueError(f"scores have {len(df)} rows but the table has {adata.n_obs}")
    old = pd.DataFrame(np.asarray(adata.X, dtype=np.float32), index=adata.obs_names, columns=adata.var_names)
    keep = [c for c in old.columns if c not in df.columns]
    new = pd.concat([old[keep], df.set_axis(adata.obs_names).astype(np.float32)], axis=1)
    X = new.to_numpy(dtype=np.float32)
    X[(adata.obs["status"].astype(str) != "ok").to_numpy(), :] = np.nan
    out = ad.AnnData(X=X, obs=adata.obs.copy(), var=pd.DataFrame(index=pd.Index(new.columns.astype(str), name="score")))
    for k, v in adata.obsm.items():
        out.obsm[k] = v
    out.uns.update(adata.uns)
    return out


def scores_frame(adata: ad.AnnData, obs_columns: Sequence[str] = OBS_COLUMNS) -> pd.DataFrame:
    """Flatten to one DataFrame: ``variant_id`` + obs columns + one column per score."""
    cols = [c for c in obs_columns if c in adata.obs.columns]
    df = adata.obs[cols].copy()
    X = np.asarray(adata.X, dtype=np.float32)
    for j, name in enumerate(adata.var_names):
        df[name] = X[:, j]
    return df.reset_index(names="variant_id")


def concat_scores(tables: Sequence[ad.AnnData]) -> ad.AnnData:
    """Concatenate per-shard scores tables (same score columns) in the given order."""
    if not tables:
        raise ValueError("no tables to concatenate")
    out = ad.concat(list(tables), join="outer", merge="first", uns_merge="first")
    # Rows with status "duplicate" repeat an earlier record's id by design and may
    # land in another shard; any other repeated id means overlapping shards.
    real = out.obs_names
    if "status" in out.obs:
        real = real[(out.obs["status"].astype(str) != "duplicate").to_numpy()]
    if real.has_duplicates:
        dup = real[real.duplicated()][:5].tolist()
        raise ValueError(f"variant ids appear in more than one shard: {dup}")
    # re-number repeated ids over the whole table, as if it had not been sharded
    out.obs_names = _unique_ids(pd.Index(out.obs_names.str.replace(r"#\d+$", "", regex=True), name="variant_id"))
    out.uns["biointerp"] = dict(tables[0].uns.get("biointerp", {}))
    return out


def read_scores(path: str | Path) -> ad.AnnData:
    """Read a scores table written by :func:`write_scores`."""
    return ad.read_h5ad(path)


def write_scores(adata: ad.AnnData, path: str | Path) -> Path:
    """Write a scores table as ``.h5ad`` (or Parquet when ``path`` ends in ``.parquet``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        scores_frame(adata).to_parquet(path, index=False)
    else:
        adata.write_h5ad(path)
    return path
