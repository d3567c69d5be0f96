"""Activation store: a directory of atomically written safetensors shards.

Layout (see DESIGN.md)::

    store/
      manifest.json            model, layers, view, K, d, dtype, window, code version
      index.parquet            variant_id -> shard, row, status, status_detail, checksum
      shard-00000.safetensors  tensors with one row per stored variant

Every write goes to a temporary name, is fsync'ed and renamed into place: a
shard first, then the index that lists it. A shard file that the index does
not list (a crash between the two renames) is ignored and overwritten on
resume, so a crashed run resumes from the last complete shard and re-running
never duplicates a variant. Variants whose status is not ``ok`` are recorded in
the index with ``shard = -1`` (no tensors), so nothing is dropped silently.

Reads stream shard by shard with :func:`safetensors.safe_open` slices, so
``iter_batches`` never holds more than one batch (plus one shard's requested
rows) in memory.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors import safe_open
from safetensors.torch import save as st_save

INDEX_COLUMNS = ["variant_id", "shard", "row", "status", "status_detail", "checksum"]
MANIFEST = "manifest.json"
INDEX = "index.parquet"
STORE_FORMAT = 1


def store_recipe(manifest: dict) -> str | None:
    """The harvest recipe of a store's manifest: ``evee``, ``genomic`` or None (pooled views).

    Stores written before recipes were named carry no ``recipe`` field; their
    EVEE views were made by the genomic recipe (with ``ref_cross`` then naming
    the genomically aligned reference), so they are read as ``genomic``.
    """
    if manifest.get("recipe"):
        return str(manifest["recipe"])
    if str(manifest.get("view", "")).startswith("evee"):
        return "genomic"
    return None


def shard_name(i: int) -> str:
    """File name of shard ``i`` (``shard-00000.safetensors``)."""
    return f"shard-{i:05d}.safetensors"


def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary name, fsync and rename."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    try:  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:  # pragma: no cover - some filesystems refuse directory fsync
        pass


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


class StoreError(RuntimeError):
    """The store is missing, inconsistent or incompatible with the request."""


class ActivationStore:
    """A resumable on-disk store of per-variant tensors.

    Create with :meth:`create` (or :meth:`open_or_create` to resume), read with
    :meth:`open`. ``index`` is a DataFrame with columns ``variant_id, shard,
    row, status, status_detail, checksum``.
    """

    def __init__(self, path: str | Path, manifest: dict, index: pd.DataFrame):
        self.path = Path(path)
        self.manifest = manifest
        self._index = index.reset_index(drop=True)
        self._done = set(self._index["variant_id"].astype(str))
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ open
    @classmethod
    def create(cls, path: str | Path, manifest: Mapping, exist_ok: bool = False) -> ActivationStore:
        """Create an empty store at ``path`` with ``manifest`` (JSON-able dict).

        With ``exist_ok=True`` an existing store with a compatible manifest is
        opened for resuming instead (see :meth:`open_or_create`).
        """
        path = Path(path)
        if (path / MANIFEST).exists():
            if not exist_ok:
                raise StoreError(f"{path} already holds an activation store; use another --store "
                                 "directory or resume it")
            return cls.open_or_create(path, manifest)
        path.mkdir(parents=True, exist_ok=True)
        man = {"format": STORE_FORMAT, **json.loads(json.dumps(dict(manifest), default=str))}
        _atomic_write(path / MANIFEST, json.dumps(man, indent=2, sort_keys=True).encode())
        index = pd.DataFrame({c: pd.Series(dtype="int64" if c in ("shard", "row") else "object")
                              for c in INDEX_COLUMNS})
        store = cls(path, man, index)
        store._write_index()
        return store

    @classmethod
    def open(cls, path: str | Path) -> ActivationStore:
        """Open an existing store (read or resume)."""
        path = Path(path)
        if not (path / MANIFEST).exists():
            raise StoreError(f"{path} is not an activation store (no {MANIFEST}); "
                             "create one with `biointerp harvest --store DIR`")
        man = json.loads((path / MANIFEST).read_text())
        index_path = path / INDEX
        if index_path.exists():
            index = pd.read_parquet(index_path)
        else:
            index = pd.DataFrame({c: [] for c in INDEX_COLUMNS})
        return cls(path, man, index)

    @classmethod
    def open_or_create(cls, path: str | Path, manifest: Mapping,
                       compare_keys: Sequence[str] | None = None) -> ActivationStore:
        """Resume the store at ``path`` if it exists (manifest must agree), else create it."""
        path = Path(path)
        if not (path / MANIFEST).exists():
            return cls.create(path, manifest)
        store = cls.open(path)
        for tmp in path.glob(".*.tmp-*"):  # leftovers of a crashed write
            tmp.unlink(missing_ok=True)
        want = json.loads(json.dumps(dict(manifest), default=str))
        keys = compare_keys if compare_keys is not None else [k for k in want if k not in ("created", "code_version")]
        diff = [k for k in keys if store.manifest.get(k) != want.get(k)]
        if diff:
            raise StoreError(
                f"{path} holds a store made with different settings ({', '.join(diff)}: "
                f"{[store.manifest.get(k) for k in diff]} vs {[want.get(k) for k in diff]}); "
                "use a new --store directory")
        return store

    # ----------------------------------------------------------------- state
    @property
    def index(self) -> pd.DataFrame:
        """Copy of the index (one row per recorded variant)."""
        return self._index.copy()

    def __contains__(self, variant_id: str) -> bool:
        return str(variant_id) in self._done

    def __len__(self) -> int:
        return len(self._index)

    @property
    def done(self) -> set[str]:
        """Variant ids already recorded (stored or with a non-ok status)."""
        return set(self._done)

    @property
    def n_shards(self) -> int:
        s = self._index["shard"]
        return int(s.max()) + 1 if len(s) and s.max() >= 0 else 0

    def tensor_names(self) -> list[str]:
        """Names of the tensors in the first shard (empty store -> [])."""
        if self.n_shards == 0:
            return []
        with safe_open(str(self.path / shard_name(0)), framework="pt") as f:
            return sorted(f.keys())

    # ----------------------------------------------------------------- write
    def write_shard(self, variant_ids: Sequence[str], tensors: Mapping[str, torch.Tensor],
                    status: str | Sequence[str] = "ok",
                    status_detail: str | Sequence[str] = "") -> int:
        """Write one shard atomically and append its rows to the index.

        ``tensors`` maps names to tensors with ``len(variant_ids)`` rows.
        Rows whose status is not ``ok`` are recorded in the index without
        tensors (their tensor rows are dropped). Returns the shard number
        (-1 when no ``ok`` row was left). Raises ``StoreError`` when an id is
        already in the store.
        """
        ids = [str(v) for v in variant_ids]
        n = len(ids)
        status = [status] * n if isinstance(status, str) else list(status)
        detail = [status_detail] * n if isinstance(status_detail, str) else list(status_detail)
        if len(status) != n or len(detail) != n:
            raise ValueError("status/status_detail must match variant_ids in length")
        for name, t in tensors.items():
            if t.shape[0] != n:
                raise ValueError(f"tensor {name!r} has {t.shape[0]} rows, expected {n}")
        with self._lock:
            dup = [v for v in ids if v in self._done]
            if dup or len(set(ids)) != n:
                raise StoreError(f"variant ids already in store {self.path}: {dup[:5] or 'repeated in batch'}")
            ok = np.array([s == "ok" for s in status], dtype=bool)
            shard = -1
            checksum = ""
            rows = np.full(n, -1, dtype=np.int64)
            if ok.any():
                shard = self.n_shards
                sel = torch.from_numpy(np.flatnonzero(ok))
                payload = {k: v.index_select(0, sel).detach().to("cpu").contiguous() for k, v in tensors.items()}
                data = st_save(payload, metadata={"variant_ids": json.dumps([i for i, o in zip(ids, ok) if o])})
                checksum = sha256_bytes(data)
                _atomic_write(self.path / shard_name(shard), data)
                rows[ok] = np.arange(int(ok.sum()))
            new = pd.DataFrame({
                "variant_id": ids,
                "shard": np.where(ok, shard, -1).astype(np.int64),
                "row": rows,
                "status": status,
                "status_detail": detail,
                "checksum": [checksum if o else "" for o in ok],
            })
            self._index = pd.concat([self._index, new], ignore_index=True) if len(self._index) else new
            self._write_index()
            self._done.update(ids)
            return shard

    def record_status(self, variant_ids: Sequence[str], status: str | Sequence[str],
                      status_detail: str | Sequence[str] = "") -> None:
        """Record variants that have no tensors (non-ok status) in the index."""
        st = [status] * len(variant_ids) if isinstance(status, str) else list(status)
        if any(s == "ok" for s in st):
            raise ValueError("record_status is for non-ok variants; use write_shard for ok ones")
        self.write_shard(variant_ids, {}, st, status_detail)

    def _write_index(self) -> None:
        idx = self._index.copy()
        for c in ("variant_id", "status", "status_detail", "checksum"):
            idx[c] = idx[c].astype(str)
        for c in ("shard", "row"):
            idx[c] = idx[c].astype(np.int64)
        import io

        buf = io.BytesIO()
        idx[INDEX_COLUMNS].to_parquet(buf, index=False)
        _atomic_write(self.path / INDEX, buf.getvalue())

    def background_writer(self, max_pending: int = 2) -> BackgroundWriter:
        """A writer thread so shard writes overlap with compute (use as a context manager)."""
        return BackgroundWriter(self, max_pending)

    # ------------------------------------------------------------------ read
    def iter_batches(self, names: Sequence[str] | None = None, batch_size: int = 64,
                     variant_ids: Sequence[str] | None = None,
                     dtype: torch.dtype | None = None) -> Iterator[tuple[list[str], dict[str, torch.Tensor]]]:
        """Stream ``(variant_ids, {name: Tensor[b, ...]})`` batches in store order.

        Only ``ok`` variants have tensors; ``variant_ids`` restricts (and
        keeps store order) to a subset. Reads one shard's requested rows at a
        time through safetensors slices; never loads the whole store.
        """
        idx = self._index[self._index["shard"] >= 0]
        if variant_ids is not None:
            want = set(map(str, variant_ids))
            missing = want - set(idx["variant_id"])
            if missing:
                raise StoreError(f"{len(missing)} requested variants have no tensors in {self.path} "
                                 f"(e.g. {sorted(missing)[:3]})")
            idx = idx[idx["variant_id"].isin(want)]
        if names is None:
            names = self.tensor_names()
        names = list(names)
        buf_ids: list[str] = []
        buf: dict[str, list[torch.Tensor]] = {k: [] for k in names}
        buffered = 0
        for shard, grp in idx.groupby("shard", sort=True):
            rows = grp["row"].to_numpy()
            ids = grp["variant_id"].tolist()
            with safe_open(str(self.path / shard_name(int(shard))), framework="pt") as f:
                keys = set(f.keys())
                lack = [k for k in names if k not in keys]
                if lack:
                    raise StoreError(f"{self.path}: tensors {lack} not in store (has {sorted(keys)})")
                start = 0
                while start < len(rows):
                    take = min(batch_size - buffered, len(rows) - start)
                    r = rows[start:start + take]
                    contiguous = len(r) and r[-1] - r[0] + 1 == len(r)
                    for k in names:
                        if contiguous:
                            t = f.get_slice(k)[int(r[0]):int(r[-1]) + 1]
                        else:
                            t = f.get_tensor(k)[torch.from_numpy(r)]
                        buf[k].append(t.to(dtype) if dtype is not None else t)
                    buf_ids.extend(ids[start:start + take])
                    buffered += take
                    start += take
                    if buffered == batch_size:
                        yield buf_ids, {k: torch.cat(v) for k, v in buf.items()}
                        buf_ids, buf, buffered = [], {k: [] for k in names}, 0
        if buffered:
            yield buf_ids, {k: torch.cat(v) for k, v in buf.items()}

    def read(self, names: Sequence[str] | None = None, variant_ids: Sequence[str] | None = None
             ) -> tuple[list[str], dict[str, torch.Tensor]]:
        """Load (a subset of) the store in memory; for small stores and tests."""
        ids: list[str] = []
        parts: dict[str, list[torch.Tensor]] = {}
        for b_ids, b in self.iter_batches(names, 4096, variant_ids):
            ids.extend(b_ids)
            for k, v in b.items():
                parts.setdefault(k, []).append(v)
        return ids, {k: torch.cat(v) for k, v in parts.items()}

    # ---------------------------------------------------------------- verify
    def verify(self) -> list[str]:
        """Check every shard's checksum and the index; returns a list of problems (empty = fine)."""
        problems: list[str] = []
        idx = self._index
        if idx["variant_id"].duplicated().any():
            problems.append(f"duplicate variant ids in index: {idx.loc[idx['variant_id'].duplicated(), 'variant_id'].tolist()[:5]}")
        for shard, grp in idx[idx["shard"] >= 0].groupby("shard"):
            p = self.path / shard_name(int(shard))
            if not p.exists():
                problems.append(f"{p.name} listed in index but missing")
                continue
            want = set(grp["checksum"])
            got = sha256_file(p)
            if want != {got}:
                problems.append(f"{p.name}: checksum {got[:12]} does not match index {sorted(want)[0][:12]}")
                continue
            with safe_open(str(p), framework="pt") as f:
                meta = f.metadata() or {}
                n = {f.get_slice(k).get_shape()[0] for k in f.keys()}
            if len(n) > 1 or (n and n.pop() != len(grp)):
                problems.append(f"{p.name}: row count does not match index ({len(grp)})")
            if "variant_ids" in meta and json.loads(meta["variant_ids"]) != grp.sort_values("row")["variant_id"].tolist():
                problems.append(f"{p.name}: variant ids differ from index")
        listed = {shard_name(int(s)) for s in idx["shard"].unique() if s >= 0}
        for p in sorted(self.path.glob("shard-*.safetensors")):
            if p.name not in listed:
                problems.append(f"{p.name} is not in the index (left by an interrupted run; it is overwritten on resume)")
        return problems

    def info(self) -> dict:
        """Summary: manifest, counts per status, shards, bytes on disk, bytes per stored variant."""
        idx = self._index
        size = sum(p.stat().st_size for p in self.path.glob("shard-*.safetensors"))
        n_ok = int((idx["shard"] >= 0).sum())
        return {
            "path": str(self.path),
            "manifest": self.manifest,
            "n_variants": len(idx),
            "status_counts": idx["status"].value_counts().to_dict(),
            "n_shards": self.n_shards,
            "tensors": self.tensor_names(),
            "bytes": size,
            "bytes_per_variant": size / n_ok if n_ok else 0.0,
        }


class BackgroundWriter:
    """Runs :meth:`ActivationStore.write_shard` calls on a thread (bounded queue).

    ``submit`` returns at once unless ``max_pending`` writes are queued;
    ``close`` (or leaving the ``with`` block) waits for all writes and
    re-raises the first error.
    """

    def __init__(self, store: ActivationStore, max_pending: int = 2):
        self.store = store
        self._q: queue.Queue = queue.Queue(maxsize=max_pending)
        self._err: BaseException | None = None
        self._t = threading.Thread(target=self._run, daemon=True, name="biointerp-store-writer")
        self._t.start()

    def _run(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            if self._err is None:
                try:
                    self.store.write_shard(*item[0], **item[1])
                except BaseException as err:  # noqa: BLE001 - re-raised in close()
                    self._err = err

    def submit(self, *args, **kwargs) -> None:
        if self._err is not None:
            raise self._err
        self._q.put((args, kwargs))

    def close(self) -> None:
        self._q.put(None)
        self._t.join()
        if self._err is not None:
            raise self._err

    def __enter__(self) -> BackgroundWriter:
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.close()
        else:
            self._q.put(None)
            self._t.join()
