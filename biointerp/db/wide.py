"""Wide releases (thousands of head columns): a small DuckDB index beside the release's shards.

Layout (``metadata.layout = "wide"``). The DuckDB file keeps what queries filter and sort on:
``variants`` (key, ids, chrom … split, ``score``) plus a locator ``shard, frow`` (shard number
and row number inside that Parquet file), the ART index on ``key``, ``genes``, ``rsids``,
``contigs``, ``metadata`` and ``heads_meta`` (one row per head column: head, view, display name,
group, description, category, kind, threshold, joined from EVEE's ``heads.feather``). Head
values are fetched only for the rows a query returns, from one of two stores:

``inplace``  the release's own shards, read where they are (local path, ``s3://``,
             ``https://``): only the row groups holding the returned rows and only the head
             columns asked for. No copy; cost grows with the shards' row-group size.
``packed``   a sidecar ``<db>.heads``: the head columns re-encoded once, row-major, in blocks
             of ``block_rows`` rows (8: one look-up decodes ~160 kB at EVEE width; byte-shuffled then zstd), so all heads of a row are one
             small contiguous read. Lossless (float32, or float64 when a head is double).

Memory stays bounded at any width: in-place row groups are decoded a column batch at a time
(``InplaceHeads.batch_bytes``), and ``VariantDB.max_head_values`` caps the head values a region
or gene result carries. The packed store reads few heads over many rows in place when the
release is still there and that decodes less.

Which store pays depends on the release's row-group size and the width; ``bench_db.py --wide``
measures both.
"""

from __future__ import annotations

import bisect
import datetime as _dt
import json
import os
import threading
from collections import OrderedDict, defaultdict
from collections.abc import Sequence
from pathlib import Path

import duckdb
import numpy as np

from biointerp.db.evee import BASE_COLUMNS, map_columns, q

_ARROW_TO_DUCK = {"float": "FLOAT", "halffloat": "FLOAT", "double": "DOUBLE", "int8": "TINYINT", "int16": "SMALLINT",
                  "int32": "INTEGER", "int64": "BIGINT", "uint8": "UTINYINT", "uint16": "USMALLINT",
                  "uint32": "UINTEGER", "uint64": "UBIGINT", "bool": "BOOLEAN"}


def _duck_type(t) -> str:
    import pyarrow as pa

    if pa.types.is_dictionary(t):
        t = t.value_type
    return _ARROW_TO_DUCK.get(str(t), "VARCHAR")


def build_wide(
    source: str | Path,
    out: str | Path,
    *,
    heads_meta: str | Path | None = None,
    store: str = "inplace",
    score_column: str | None = None,
    heads: Sequence[str] | None = None,
    zero_based: bool | None = None,
    kind: str | None = None,
    block_rows: int = 8,
    memory_limit: str = "3GB",
    model: str | None = None,
    probe: str | None = None,
    description: str | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> dict:
    """Index a release (folder, ``manifest.json``, shard glob, file or URL) into ``out``.

    Reads only the key columns (id, gene, consequence, significance, label, rsID, score) of
    every row group, so the index is built in one narrow pass; ``store="packed"`` then
    re-encodes the head columns into ``<out>.heads`` (one full pass over the shards).
    Returns the metadata dict stored in the database.
    """
    import pyarrow as pa
    from tqdm.auto import tqdm

    from biointerp import __version__
    from biointerp.db.build import _create_lookup_tables, _create_variants, _rank_contigs
    from biointerp.db.release import head_columns_map, locate, read_heads
    from biointerp.db.remote import parquet_file

    if store not in ("inplace", "packed"):
        raise ValueError(f"unknown head store {store!r}; use 'inplace' or 'packed'")
    rel = locate(source, heads_meta)
    if store == "packed" and rel.remote:
        raise ValueError("store='packed' writes a local copy; for shards in object storage use store='inplace'")
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass overwrite=True (CLI: --force) to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    for p in (tmp, Path(str(tmp) + ".wal"), Path(str(tmp) + ".heads")):
        p.unlink(missing_ok=True)
    files = [parquet_file(s) for s in rel.shards]
    n_total = sum(f.metadata.num_rows for f in files)
    con = duckdb.connect(str(tmp))
    con.execute("SET enable_progress_bar = false")
    con.execute(f"SET memory_limit = '{memory_limit}'")  # DuckDB spills the sort to disk beyond it
    bar = tqdm(total=n_total, desc="db build: index", unit="row", unit_scale=True, disable=not progress)
    try:
        plan0, infos, rg_rows = None, [], []
        first = True
        for i, (path, pf) in enumerate(zip(rel.shards, files)):
            schema = {f.name: _duck_type(f.type) for f in pf.schema_arrow}
            plan = map_columns(schema, kind=kind or "evee", zero_based=zero_based, score_column=score_column,
                               heads=heads)
            if plan0 is None:
                plan0 = plan
            elif plan["head_sources"] != plan0["head_sources"]:
                raise ValueError(f"{path}: head columns differ from {rel.shards[0]}'s; shards must share a schema")
            exprs = [f"{e} AS {q(k)}" for k, e in plan["select"].items()]
            status_col = next((c for c in schema if c.lower() == "status"), None)
            ok = f"coalesce(CAST({q(status_col)} AS VARCHAR), 'ok') = 'ok'" if status_col else "TRUE"
            sel = (f"SELECT {', '.join(exprs)}, CAST({i} AS SMALLINT) AS source, CAST({i} AS SMALLINT) AS shard, "
                   f"CAST(frow AS INTEGER) AS frow FROM (SELECT *, {ok} AS status_ok FROM chunk)")
            md = pf.metadata
            rows_here = [md.row_group(g).num_rows for g in range(md.num_row_groups)]
            rg_rows.append(rows_here)
            start = 0
            for g in range(md.num_row_groups):
                t = pf.read_row_group(g, columns=plan["read"])
                t = t.append_column("frow", pa.array(np.arange(start, start + t.num_rows, dtype=np.int64)))
                start += t.num_rows
                con.register("chunk", t)
                if first:
                    con.execute(f"CREATE TEMP TABLE staged AS {sel}")
                    first = False
                else:
                    con.execute(f"INSERT INTO staged {sel}")
                con.unregister("chunk")
                bar.update(t.num_rows)
            infos.append({"path": path, "rows": md.num_rows, "row_groups": md.num_row_groups,
                          "kind": plan["kind"], "zero_based_ids": plan["zero_based"],
                          "score_source": plan["score_source"], "n_heads": len(plan["heads"]),
                          "ignored_columns": plan["ignored"]})
        bar.close()
        bad = con.execute("SELECT count(*) FROM staged WHERE chrom IS NULL OR pos IS NULL OR ref IS NULL "
                          "OR alt IS NULL").fetchall()[0][0]
        if bad:
            raise ValueError(f"{bad} rows have no parsable chrom/pos/ref/alt; check the id column")
        _rank_contigs(con)
        _create_variants(con, plan0["score_type"], ", s.shard, s.frow")
        con.execute("CREATE INDEX variants_key_idx ON variants (key)")
        _create_lookup_tables(con)
        head_names = list(plan0["head_sources"])
        head_types = plan0["head_types"]
        meta_rows = read_heads(rel.heads_file) if rel.heads_file else []
        _heads_meta_table(con, head_names, plan0["head_sources"], meta_rows, head_columns_map)
        n_rows = con.execute("SELECT count(*) FROM variants").fetchall()[0][0]
        n_dup = con.execute(
            "SELECT count(*) FROM (SELECT variant_id FROM variants GROUP BY 1 HAVING count(*) > 1)").fetchall()[0][0]
        head_dtype = "float64" if "DOUBLE" in head_types.values() else "float32"
        meta = {
            "schema_version": 1,
            "layout": "wide",
            "head_store": store,
            "biointerp_version": __version__,
            "duckdb_version": duckdb.__version__,
            "build_date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "n_rows": n_rows,
            "n_duplicate_ids": n_dup,
            "score_source": sorted({i["score_source"] for i in infos if i["score_source"]}),
            "heads": head_names,
            "head_sources": [plan0["head_sources"][h] for h in head_names],
            "head_type": "DOUBLE" if head_dtype == "float64" else "FLOAT",
            "columns": [*BASE_COLUMNS, *head_names],
            "shards": [_abs(s) for s in rel.shards],
            "shard_row_groups": rg_rows,
            "manifest": rel.manifest,
            "heads_file": _abs(rel.heads_file) if rel.heads_file else None,
            "model": model,
            "probe": probe,
            "description": description,
            "id_convention": "variant_id: chrom:pos:ref:alt, 1-based VCF pos; variant_id0: 0-based pos (EVEE)",
            "inputs": infos,
        }
        if store == "packed":
            meta["packed"] = _write_packed(con, files, meta["head_sources"], Path(str(tmp) + ".heads"),
                                           block_rows=block_rows, dtype=head_dtype, progress=progress)
            meta["packed"]["file"] = out.name + ".heads"
        con.execute("CREATE TABLE metadata (key VARCHAR PRIMARY KEY, value VARCHAR)")
        con.executemany("INSERT INTO metadata VALUES (?, ?)", [(k, json.dumps(v, default=str)) for k, v in meta.items()])
        con.execute("CHECKPOINT")
    except BaseException:
        bar.close()
        con.close()
        tmp.unlink(missing_ok=True)
        Path(str(tmp) + ".heads").unlink(missing_ok=True)
        raise
    con.close()
    if store == "packed":
        os.replace(str(tmp) + ".heads", str(out) + ".heads")
    os.replace(tmp, out)
    return meta


def _abs(p: str) -> str:
    from biointerp.db.release import is_remote

    return p if is_remote(p) else os.path.abspath(p)


def _heads_meta_table(con, head_names, head_sources, meta_rows, head_columns_map) -> None:
    """``heads_meta``: one row per head column with its release metadata (NULL where none)."""
    by_head = {r["head"]: r for r in meta_rows}
    cmap = head_columns_map(list(head_sources.values()), meta_rows)
    rows = []
    for i, h in enumerate(head_names):
        src = head_sources[h]
        head, view = cmap.get(src, (src, ""))
        r = by_head.get(head, {})
        thr = r.get("predictor_threshold")
        rows.append((h, i, src, head, view, r.get("display"), r.get("group"), r.get("description"),
                     r.get("category"), r.get("kind"), None if thr is None else float(thr),
                     json.dumps({k: v for k, v in r.items() if v is not None}, default=str) if r else None))
    import pandas as pd

    names = ["column_name", "idx", "source", "head", "view", "display", "group", "description", "category", "kind",
             "threshold", "info"]
    df = pd.DataFrame.from_records(rows, columns=names).astype({"idx": "int32", "threshold": "float64"})
    con.register("heads_meta_df", df)
    con.execute("""CREATE TABLE heads_meta AS SELECT column_name::VARCHAR AS column_name, idx::INTEGER AS idx,
                   source::VARCHAR AS source, head::VARCHAR AS head, view::VARCHAR AS view,
                   display::VARCHAR AS display, "group"::VARCHAR AS "group", description::VARCHAR AS description,
                   category::VARCHAR AS category, kind::VARCHAR AS kind, threshold::DOUBLE AS threshold,
                   info::VARCHAR AS info FROM heads_meta_df ORDER BY idx""")
    con.unregister("heads_meta_df")


# ---------------------------------------------------------------------------------------------
# packed store


def _shuffle(a: np.ndarray) -> bytes:
    """Byte-shuffle (all first bytes, then all second bytes…): floats compress far better."""
    return np.ascontiguousarray(a.view(np.uint8).reshape(-1, a.dtype.itemsize).T).tobytes()


def _unshuffle(buf: bytes, dtype, n: int) -> np.ndarray:
    item = np.dtype(dtype).itemsize
    return np.ascontiguousarray(np.frombuffer(buf, np.uint8).reshape(item, n).T).view(dtype)


def _write_packed(con, files, sources: list[str], path: Path, *, block_rows: int, dtype: str,
                  progress: bool) -> dict:
    """Write all head columns row-major in blocks of ``block_rows`` file rows; record block offsets."""
    import pyarrow as pa
    from tqdm.auto import tqdm

    dt = np.dtype(dtype)
    w = len(sources)
    offsets: list[list[int]] = []
    total = sum(f.metadata.num_rows for f in files)
    bar = tqdm(total=total, desc="db build: packed heads", unit="row", unit_scale=True, disable=not progress)
    pos = 0
    with open(path, "wb") as fh:
        for pf in files:
            offs = []
            batch = max(block_rows, (8192 // block_rows) * block_rows)
            for rb in pf.iter_batches(batch_size=batch, columns=sources, use_threads=True):
                # column-major first (contiguous writes), then each block is a small transpose
                cm = np.empty((w, rb.num_rows), dtype=dt)
                for j in range(w):
                    col = rb.column(j)
                    if not pa.types.is_floating(col.type):
                        col = col.cast(pa.float64())
                    cm[j] = col.to_numpy(zero_copy_only=False)
                for lo in range(0, rb.num_rows, block_rows):
                    blk = np.ascontiguousarray(cm[:, lo:lo + block_rows].T)
                    data = pa.compress(_shuffle(blk), codec="zstd", asbytes=True)
                    offs.append(pos)
                    fh.write(data)
                    pos += len(data)
                bar.update(rb.num_rows)
            offs.append(pos)
            offsets.append(offs)
    bar.close()
    blocks = pa.table({"shard": pa.array(np.concatenate([np.full(len(o), s, np.int16) for s, o in enumerate(offsets)])),
                       "block": pa.array(np.concatenate([np.arange(len(o), dtype=np.int32) for o in offsets])),
                       "byte_offset": pa.array(np.concatenate([np.asarray(o, np.int64) for o in offsets]))})
    con.register("blocks_arrow", blocks)
    con.execute("CREATE TABLE head_blocks AS SELECT * FROM blocks_arrow ORDER BY shard, block")
    con.unregister("blocks_arrow")
    return {"block_rows": block_rows, "dtype": dtype, "codec": "zstd+byteshuffle", "bytes": pos, "width": w}


# ---------------------------------------------------------------------------------------------
# head stores (query time)


class InplaceHeads:
    """Heads read from the release's shards: per returned row, its row group, only asked columns.

    Memory is bounded by ``batch_bytes``: a row group is decoded ``batch_bytes / (rows x 8)``
    columns at a time and only the returned rows are kept, so a 4,906-column row group of 65k rows
    (1.3 GB of float32) never sits in memory at once. Small decoded row groups are cached
    (``cache_bytes``) for a browsing session that revisits them.
    """

    def __init__(self, metadata: dict, batch_bytes: int = 128 << 20, cache_bytes: int = 64 << 20):
        self.shards = metadata["shards"]
        self.sources = dict(zip(metadata["heads"], metadata["head_sources"]))
        self.rg_rows = metadata["shard_row_groups"]
        self.starts = [np.concatenate([[0], np.cumsum(r)]).tolist() for r in self.rg_rows]
        self._files: dict[int, object] = {}
        self._locks = defaultdict(threading.Lock)
        self.batch_bytes = batch_bytes
        self.cache_bytes = cache_bytes
        self._cache: OrderedDict = OrderedDict()
        self._cache_lock = threading.Lock()
        self._idx: dict = {}

    def _take(self, s: int, g: int, cols: list[str], rows: list[int]):
        """Rows ``rows`` of row group ``g`` of shard ``s``, columns ``cols`` (Arrow table)."""
        import pyarrow as pa

        n = self.rg_rows[s][g]
        whole = n * len(cols) * 8 <= self.cache_bytes // 4
        key = (s, g, tuple(cols))
        if whole:
            with self._cache_lock:
                t = self._cache.get(key)
                if t is not None:
                    self._cache.move_to_end(key)
                    return t.take(rows)
        per = max(1, self.batch_bytes // max(1, n * 8))
        parts = []
        with self._locks[s]:
            pf = self._pf(s)
            idx = self._indices(s, pf, cols)
            for lo in range(0, len(cols), per):
                # by column index: name look-up costs ~40 us a column in a 4,906-column schema
                t = pf.reader.read_row_group(g, column_indices=idx[lo:lo + per], use_threads=False)
                if whole:
                    parts.append(t)
                else:
                    parts.append(t.take(rows))
                del t
        arrays, names = [], []
        for t in parts:
            arrays += t.columns
            names += t.column_names
        t = pa.Table.from_arrays(arrays, names=names)
        if not whole:
            return t
        with self._cache_lock:
            self._cache[key] = t
            while sum(x.nbytes for x in self._cache.values()) > self.cache_bytes:
                self._cache.popitem(last=False)
        return t.take(rows)

    def _indices(self, s: int, pf, cols: list[str]) -> list[int]:
        key = (s, tuple(cols))
        idx = self._idx.get(key)
        if idx is None:
            pos = {f.name: i for i, f in enumerate(pf.schema_arrow)}
            idx = self._idx[key] = [pos[c] for c in cols]
            if len(self._idx) > 64:
                self._idx.pop(next(iter(self._idx)))
        return idx

    def _pf(self, s: int):
        pf = self._files.get(s)
        if pf is None:
            from biointerp.db.remote import parquet_file

            pf = self._files[s] = parquet_file(self.shards[s])
        return pf

    def _group(self, s: int, fr: int) -> int:
        return bisect.bisect_right(self.starts[s], fr) - 1

    def cost(self, locs: list[tuple[int, int]], n_cols: int) -> int:
        """Values decoded to fetch ``n_cols`` heads of ``locs`` (whole row groups, asked columns)."""
        return sum(self.rg_rows[s][g] for s, g in {(s, self._group(s, fr)) for s, fr in locs}) * n_cols

    def fetch(self, locs: list[tuple[int, int]], names: list[str]) -> list[tuple]:
        cols = [self.sources[n] for n in names]
        groups: dict[tuple[int, int], list[tuple[int, int]]] = defaultdict(list)
        for i, (s, fr) in enumerate(locs):
            g = bisect.bisect_right(self.starts[s], fr) - 1
            groups[(s, g)].append((i, fr - self.starts[s][g]))
        out: list = [None] * len(locs)
        uniq = list(dict.fromkeys(cols))
        where = {c: j for j, c in enumerate(uniq)}
        for (s, g), items in groups.items():
            t = self._take(s, g, uniq, [r for _, r in items])
            m = _rows_as_objects(t, [where[c] for c in cols])
            for (i, _), row in zip(items, m):
                out[i] = row
        return out

    def close(self) -> None:
        self._files.clear()


class PackedHeads:
    """Heads from the packed sidecar: one pread + decompress per block, small LRU of blocks."""

    def __init__(self, metadata: dict, db_path: Path, con):
        p = metadata["packed"]
        self.path = Path(db_path).with_name(p["file"])
        if not self.path.exists():
            raise FileNotFoundError(f"{self.path}: the packed head store beside the database is missing")
        self.block_rows, self.dtype, self.width = p["block_rows"], np.dtype(p["dtype"]), p["width"]
        self.idx = {h: i for i, h in enumerate(metadata["heads"])}
        n_sh = len(metadata["shards"])
        t = con.execute("SELECT shard, byte_offset FROM head_blocks ORDER BY shard, block").fetchnumpy()
        self.offsets = [np.asarray(t["byte_offset"][np.asarray(t["shard"]) == k], dtype=np.int64) for k in range(n_sh)]
        self.n_rows = [int(sum(r)) for r in metadata["shard_row_groups"]]
        self.fd = os.open(self.path, os.O_RDONLY)
        from biointerp.db.release import is_remote

        here = all(is_remote(p) or os.path.exists(p) for p in metadata["shards"])
        self.inplace = InplaceHeads(metadata) if here else None  # the release, when still beside us
        self._cache: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def _block(self, s: int, b: int) -> np.ndarray:
        import pyarrow as pa

        key = (s, b)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
        o0, o1 = int(self.offsets[s][b]), int(self.offsets[s][b + 1])
        raw = os.pread(self.fd, o1 - o0, o0)
        rows = min(self.block_rows, self.n_rows[s] - b * self.block_rows)
        n = rows * self.width
        buf = pa.decompress(raw, decompressed_size=n * self.dtype.itemsize, codec="zstd", asbytes=True)
        m = _unshuffle(buf, self.dtype, n).reshape(rows, self.width)
        with self._lock:
            self._cache[key] = m
            if len(self._cache) > 256:
                self._cache.popitem(last=False)
        return m

    def fetch(self, locs: list[tuple[int, int]], names: list[str]) -> list[tuple]:
        cols = np.array([self.idx[n] for n in names], dtype=np.int64)
        if not locs:
            return []
        if self.inplace is not None and len(names) * 8 < self.width:
            # few heads over many rows: decoding whole 8-row blocks of every head costs more than
            # reading just those columns' row groups in place; pick the smaller decode
            blocks = {(s, fr // self.block_rows) for s, fr in locs}
            packed_cost = len(blocks) * self.block_rows * self.width
            inplace_cost = self.inplace.cost(locs, len(names))
            if inplace_cost < packed_cost:
                return self.inplace.fetch(locs, names)
        vals = np.empty((len(locs), len(cols)), dtype=self.dtype)
        for i, (s, fr) in enumerate(locs):
            b, r = divmod(fr, self.block_rows)
            vals[i] = self._block(s, b)[r, cols]
        return _matrix_as_objects(vals)

    def close(self) -> None:
        if self.inplace is not None:
            self.inplace.close()
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _matrix_as_objects(vals: np.ndarray) -> list[tuple]:
    obj = vals.astype(np.float64).astype(object)
    obj[np.isnan(vals)] = None
    return list(map(tuple, obj))


def _rows_as_objects(t, order: list[int]) -> list[tuple]:
    """Rows of Arrow table ``t`` (columns in ``order``) as tuples, NaN and null as None."""
    import pyarrow as pa

    if t.num_rows == 0:
        return []
    cols = []
    for j in order:
        c = t.column(j)
        if pa.types.is_floating(c.type) or pa.types.is_integer(c.type):
            a = c.to_numpy(zero_copy_only=False).astype(np.float64)
        else:
            a = np.array(c.to_pylist(), dtype=object)
        cols.append(a)
    if all(a.dtype == np.float64 for a in cols):
        return _matrix_as_objects(np.column_stack(cols))
    obj = np.empty((t.num_rows, len(cols)), dtype=object)
    for j, a in enumerate(cols):
        if a.dtype == np.float64:
            o = a.astype(object)
            o[np.isnan(a)] = None
            obj[:, j] = o
        else:
            obj[:, j] = a
    return list(map(tuple, obj))


def open_store(metadata: dict, db_path: Path, con):
    """The head store a wide database was built with."""
    if metadata.get("head_store") == "packed":
        return PackedHeads(metadata, db_path, con)
    return InplaceHeads(metadata)
