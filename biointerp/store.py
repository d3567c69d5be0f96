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

Integrity: every reader checks a shard's sha256 against the index the first
time it opens the shard (once per :class:`ActivationStore` object), so a
damaged shard is an error, never a silently wrong tensor. A damaged or missing
manifest, index or shard raises :class:`StoreError` naming the file and the fix.
:meth:`ActivationStore.mark_damaged` takes damaged shards out of the index: their
variants get the status ``damaged`` (no tensors) and a rerun of the harvest
(``biointerp harvest ... --repair``) recomputes exactly those variants into the
same shard number and index rows, so the repaired store equals an undamaged run.
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
#: Status of variants whose shard was found damaged and dropped (awaiting recompute).
DAMAGED = "damaged"


def repair_hint(path: str | Path) -> str:
    """The advice given with every damaged-shard error."""
    return (f"repair it with `biointerp harvest <the same options> --store {path} --repair` (recomputes exactly "
            f"the damaged shards' variants), or run `biointerp store repair {path}` and then rerun the harvest")


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


class DamagedShardError(StoreError):
    """A shard listed in the index is missing, unreadable or fails its checksum."""

    def __init__(self, path: Path, reason: str, store: Path):
        self.shard_path, self.reason = Path(path), reason
        super().__init__(f"{path}: {reason}; {repair_hint(store)}")


class ActivationStore:
    """A resumable on-disk store of per-variant tensors.

    Create with :meth:`create` (or :meth:`open_or_create` to resume), read with
    :meth:`open`. ``index`` is a DataFrame with columns ``variant_id, shard,
    row, status, status_detail, checksum``.
    """

    def __init__(self, path: str | Path, manifest: dict, index: pd.DataFrame, verify_reads: bool = True):
        self.path = Path(path)
        self.manifest = manifest
        self._index = index.reset_index(drop=True)
        self._done = set(self._index.loc[self._index["status"] != DAMAGED, "variant_id"].astype(str))
        self._lock = threading.Lock()
        #: check each shard's checksum when a reader first opens it (``False`` only for benchmarks)
        self.verify_reads = verify_reads
        self._checked: dict[int, str] = {}  # shard -> checksum that was verified
        self._sums: dict[int, str] | None = None  # shard -> checksum in the index (lazy)

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
    def open(cls, path: str | Path, verify_reads: bool = True) -> ActivationStore:
        """Open an existing store (read or resume).

        Raises :class:`StoreError` when ``manifest.json`` or ``index.parquet`` is
        missing or damaged. ``verify_reads`` (default on) checks each shard's
        checksum the first time a reader opens it.
        """
        path = Path(path)
        if not (path / MANIFEST).exists():
            raise StoreError(f"{path} is not an activation store (no {MANIFEST}); "
                             "create one with `biointerp harvest --store DIR`")
        lost = ("it cannot be rebuilt from the shards; harvest again into a new --store directory "
                "(or restore the file from a backup)")
        try:
            man = json.loads((path / MANIFEST).read_text())
        except (OSError, UnicodeDecodeError, ValueError) as err:
            raise StoreError(f"{path / MANIFEST} is damaged (not JSON: {err}); {lost}") from err
        if not isinstance(man, dict):
            raise StoreError(f"{path / MANIFEST} is damaged (a JSON {type(man).__name__}, not an object); {lost}")
        index_path = path / INDEX
        if index_path.exists():
            try:
                index = pd.read_parquet(index_path)
            except Exception as err:  # noqa: BLE001 - pyarrow raises several types for a bad file
                raise StoreError(f"{index_path} is damaged (not a readable Parquet file: "
                                 f"{str(err).splitlines()[0][:200]}); {lost}") from err
            lack = [c for c in INDEX_COLUMNS if c not in index.columns]
            if lack:
                raise StoreError(f"{index_path} is damaged (no column(s) {lack}); {lost}")
            for c in ("shard", "row"):
                if not pd.api.types.is_integer_dtype(index[c]):
                    raise StoreError(f"{index_path} is damaged (column {c!r} is {index[c].dtype}, not integer); "
                                     f"{lost}")
            index = index[INDEX_COLUMNS]
        elif any(path.glob("shard-*.safetensors")):
            raise StoreError(f"{index_path} is missing but {path} holds shards; {lost}")
        else:  # a crash between writing the manifest and the first (empty) index
            index = pd.DataFrame({c: pd.Series(dtype="int64" if c in ("shard", "row") else "object")
                                  for c in INDEX_COLUMNS})
        return cls(path, man, index, verify_reads=verify_reads)

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

    @property
    def damaged_ids(self) -> list[str]:
        """Variants whose shard was dropped as damaged and that await recompute."""
        return self._index.loc[self._index["status"] == DAMAGED, "variant_id"].astype(str).tolist()

    def _shard_sums(self) -> dict[int, str]:
        if self._sums is None:
            idx = self._index[self._index["shard"] >= 0]
            self._sums = dict(zip(idx["shard"].astype(int), idx["checksum"].astype(str)))
        return self._sums

    def _next_shard(self) -> int:
        """The lowest shard number not in use (a dropped damaged shard's number first)."""
        used = set(self._shard_sums())
        return next(i for i in range(len(used) + 1) if i not in used)

    def check_shard(self, shard: int, force: bool = False) -> Path:
        """Path of shard ``shard`` after checking it exists and matches its checksum in the index.

        The hash is computed once per store object (``force`` recomputes it); raises
        :class:`DamagedShardError` naming the file and the repair command.
        """
        shard = int(shard)
        p = self.path / shard_name(shard)
        want = self._shard_sums().get(shard)
        if want is None:
            raise StoreError(f"{p.name} is not listed in the index of {self.path}")
        if not force and self._checked.get(shard) == want:
            return p
        if not p.is_file():
            raise DamagedShardError(p, "shard listed in the index is missing", self.path)
        if self.verify_reads or force:
            got = sha256_file(p)
            if got != want:
                raise DamagedShardError(p, f"shard is damaged (checksum sha256 {got[:12]}, the index records {want[:12]})",
                                        self.path)
            self._checked[shard] = want
        return p

    def _open_shard(self, shard: int):
        """``safe_open`` on a checked shard; an unreadable file is a :class:`DamagedShardError`."""
        p = self.check_shard(shard)
        try:
            return safe_open(str(p), framework="pt")
        except Exception as err:  # noqa: BLE001 - safetensors raises its own error types
            raise DamagedShardError(p, f"shard is damaged (not a readable safetensors file: {err})",
                                    self.path) from err

    def tensor_names(self) -> list[str]:
        """Names of the tensors in the first listed shard (empty store -> [])."""
        sums = self._shard_sums()
        if not sums:
            return []
        with self._open_shard(min(sums)) as f:
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
                shard = self._next_shard()
                sel = torch.from_numpy(np.flatnonzero(ok))
                payload = {k: v.index_select(0, sel).detach().to("cpu").contiguous() for k, v in tensors.items()}
                data = st_save(payload, metadata={"variant_ids": json.dumps([i for i, o in zip(ids, ok) if o])})
                checksum = sha256_bytes(data)
                _atomic_write(self.path / shard_name(shard), data)
                rows[ok] = np.arange(int(ok.sum()))
                self._checked[shard] = checksum
            new = pd.DataFrame({
                "variant_id": ids,
                "shard": np.where(ok, shard, -1).astype(np.int64),
                "row": rows,
                "status": status,
                "status_detail": detail,
                "checksum": [checksum if o else "" for o in ok],
            })
            # variants of a dropped damaged shard are recomputed into their own index rows
            old = self._index.index[(self._index["status"] == DAMAGED) & self._index["variant_id"].isin(ids)]
            if len(old):
                pos = dict(zip(ids, range(n)))
                take = [pos[v] for v in self._index.loc[old, "variant_id"]]
                for c in INDEX_COLUMNS:
                    self._index.loc[old, c] = new[c].to_numpy()[take]
                new = new.drop(index=take)
            if len(new):
                self._index = pd.concat([self._index, new], ignore_index=True) if len(self._index) else new
            self._sums = None
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
        n_bad = int((self._index["status"] == DAMAGED).sum())
        if n_bad:
            raise StoreError(f"{self.path}: {n_bad} variants are marked damaged and await recompute; "
                             f"{repair_hint(self.path)}")
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
        groups = list(idx.groupby("shard", sort=True))
        ahead = self._verify_ahead([int(g[0]) for g in groups])
        for shard, grp in groups:
            rows = grp["row"].to_numpy()
            ids = grp["variant_id"].tolist()
            next(ahead)  # this shard's checksum, hashed on a thread while the one before was read
            with self._open_shard(int(shard)) as f:
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

    def _verify_ahead(self, shards: Sequence[int], depth: int = 2) -> Iterator[None]:
        """Yields once per shard of ``shards`` (in order) after its checksum was checked, hashing up to
        ``depth`` shards ahead on a thread (hashlib releases the GIL), so the check overlaps reading."""
        sums = self._shard_sums()
        todo = [s for s in shards if self.verify_reads and self._checked.get(s) != sums.get(s)]
        if len(todo) < 2:
            for _ in shards:
                yield
            return
        from concurrent.futures import ThreadPoolExecutor

        pool = ThreadPoolExecutor(1, thread_name_prefix="biointerp-verify")
        pending: dict[int, object] = {}
        try:
            for j, shard in enumerate(shards):
                for nxt in shards[j + 1:j + 1 + depth]:
                    if nxt not in pending and self._checked.get(nxt) != sums.get(nxt):
                        pending[nxt] = pool.submit(self.check_shard, nxt)
                fut = pending.pop(shard, None)
                if fut is not None:
                    fut.result()  # re-raises DamagedShardError here, in shard order
                yield
        finally:
            pool.shutdown(wait=False, cancel_futures=True)

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
    def damaged_shards(self, progress: bool = False) -> dict[int, str]:
        """``{shard: reason}`` for every listed shard that is missing, fails its checksum, or whose
        rows / variant ids disagree with the index (hashes every shard)."""
        from tqdm.auto import tqdm

        bad: dict[int, str] = {}
        idx = self._index[self._index["shard"] >= 0]
        groups = list(idx.groupby("shard"))
        for shard, grp in tqdm(groups, desc="verify", unit="shard", disable=not progress):
            shard = int(shard)
            if grp["checksum"].nunique() > 1:
                bad[shard] = "its index rows record different checksums"
                continue
            try:
                self.check_shard(shard, force=True)
                with self._open_shard(shard) as f:
                    meta = f.metadata() or {}
                    n = {f.get_slice(k).get_shape()[0] for k in f.keys()}
            except DamagedShardError as err:
                bad[shard] = err.reason
                continue
            if len(n) > 1 or (n and n.pop() != len(grp)):
                bad[shard] = f"row count does not match the index ({len(grp)})"
            elif "variant_ids" in meta and json.loads(meta["variant_ids"]) != grp.sort_values("row")["variant_id"].tolist():
                bad[shard] = "variant ids differ from the index"
        return bad

    def verify(self, progress: bool = False) -> list[str]:
        """Check every shard's checksum and the index; returns a list of problems (empty = fine)."""
        problems: list[str] = []
        idx = self._index
        if idx["variant_id"].duplicated().any():
            problems.append(f"duplicate variant ids in index: {idx.loc[idx['variant_id'].duplicated(), 'variant_id'].tolist()[:5]}")
        for shard, reason in self.damaged_shards(progress).items():
            problems.append(f"{shard_name(shard)}: {reason}")
        n_bad = int((idx["status"] == DAMAGED).sum())
        if n_bad:
            problems.append(f"{n_bad} variants are marked damaged and await recompute (rerun the harvest with --repair)")
        listed = {shard_name(int(s)) for s in idx["shard"].unique() if s >= 0}
        for p in sorted(self.path.glob("shard-*.safetensors")):
            if p.name not in listed:
                problems.append(f"{p.name} is not in the index (left by an interrupted run; it is overwritten on resume)")
        return problems

    def mark_damaged(self, shards: Mapping[int, str] | None = None, progress: bool = False) -> dict[int, list[str]]:
        """Take damaged shards out of the store so that a rerun of the harvest recomputes their variants.

        ``shards`` maps shard -> reason (default: :meth:`damaged_shards`). Their index rows keep
        their place with ``status = "damaged"`` and no tensors, the index is rewritten atomically,
        then the shard files are deleted. Returns ``{shard: [variant ids]}``.
        """
        if shards is None:
            shards = self.damaged_shards(progress)
        out: dict[int, list[str]] = {}
        with self._lock:
            for shard, reason in shards.items():
                rows = self._index.index[self._index["shard"] == int(shard)]
                out[int(shard)] = self._index.loc[rows, "variant_id"].astype(str).tolist()
                self._index.loc[rows, "shard"] = -1
                self._index.loc[rows, "row"] = -1
                self._index.loc[rows, "status"] = DAMAGED
                self._index.loc[rows, "status_detail"] = f"{shard_name(int(shard))}: {reason}"
                self._index.loc[rows, "checksum"] = ""
                self._done.difference_update(out[int(shard)])
                self._checked.pop(int(shard), None)
            self._sums = None
            if out:
                self._write_index()
            for shard in out:
                (self.path / shard_name(shard)).unlink(missing_ok=True)
        return out

    def check_headers(self) -> None:
        """Cheap structural check of every listed shard: present, and its safetensors header agrees
        with its size (catches missing, empty and truncated shards without hashing them)."""
        for shard in sorted(self._shard_sums()):
            p = self.path / shard_name(shard)
            if not p.is_file():
                raise DamagedShardError(p, "shard listed in the index is missing", self.path)
            try:
                with safe_open(str(p), framework="pt"):
                    pass
            except Exception as err:  # noqa: BLE001 - safetensors raises its own error types
                raise DamagedShardError(p, f"shard is damaged (not a readable safetensors file: {err})",
                                        self.path) from err

    def info(self) -> dict:
        """Summary: manifest, counts per status, shards, bytes on disk, bytes per stored variant.

        Checks every shard's presence and header (:meth:`check_headers`) and the first shard's checksum.
        """
        self.check_headers()
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
