"""Files by path or URL: local, ``s3://`` (Arrow's S3 client) and ``http(s)://`` (fsspec), all read
with range requests (Parquet footers and the column chunks asked for, never whole files).

S3 settings come from the usual AWS variables (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_REGION``) plus ``AWS_ENDPOINT_URL`` (or ``BIOINTERP_S3_ENDPOINT``) for S3-compatible
servers (MinIO, Ceph, a local test server).

DuckDB's own ``httpfs`` extension is used for the index build only when it is already
installed (it is downloaded from DuckDB's site, which an offline machine cannot reach); the
Arrow path needs nothing beyond pyarrow.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from urllib.parse import urlparse

_FS_CACHE: dict = {}


def _s3():
    import pyarrow.fs as pafs

    endpoint = os.environ.get("BIOINTERP_S3_ENDPOINT") or os.environ.get("AWS_ENDPOINT_URL")
    key = ("s3", endpoint)
    if key not in _FS_CACHE:
        kw: dict = {}
        if endpoint:
            u = urlparse(endpoint if "://" in endpoint else "http://" + endpoint)
            kw.update(endpoint_override=u.netloc, scheme=u.scheme or "https")
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        if region:
            kw["region"] = region
        if not os.environ.get("AWS_ACCESS_KEY_ID"):
            kw["anonymous"] = True
        _FS_CACHE[key] = pafs.S3FileSystem(**kw)
    return _FS_CACHE[key]


def _http():
    import pyarrow.fs as pafs

    if "http" not in _FS_CACHE:
        try:
            import fsspec
        except ImportError as err:  # pragma: no cover - fsspec comes with our dependencies
            raise ImportError("https:// inputs need fsspec and aiohttp: pip install fsspec aiohttp") from err
        _FS_CACHE["http"] = pafs.PyFileSystem(pafs.FSSpecHandler(fsspec.filesystem("http")))
    return _FS_CACHE["http"]


def resolve(path: str):
    """``(pyarrow FileSystem, path inside it)`` for a local path or URL."""
    import pyarrow.fs as pafs

    p = str(path)
    if p.startswith("s3://"):
        return _s3(), p[5:]
    if p.startswith(("http://", "https://")):
        return _http(), p
    return pafs.LocalFileSystem(), os.path.abspath(p)


@contextmanager
def open_input_file(path: str):
    """A seekable, random-access file (ranged reads for URLs)."""
    fs, p = resolve(path)
    try:
        fh = fs.open_input_file(p)
    except OSError as err:
        if "not found" in str(err).lower() or "no such" in str(err).lower() or "404" in str(err):
            raise FileNotFoundError(f"{path}: not found") from None
        raise
    try:
        yield fh
    finally:
        fh.close()


def exists(path: str) -> bool:
    import pyarrow.fs as pafs

    fs, p = resolve(path)
    try:
        return fs.get_file_info(p).type == pafs.FileType.File
    except (OSError, FileNotFoundError):
        return False


def list_files(prefix: str) -> list[str]:
    """Files directly under a local folder or ``s3://bucket/prefix`` (sorted, full paths/URLs)."""
    import pyarrow.fs as pafs

    if prefix.startswith(("http://", "https://")):
        raise ValueError(f"{prefix}: https has no listing; pass the manifest.json URL or the shard URLs")
    fs, p = resolve(prefix)
    infos = fs.get_file_info(pafs.FileSelector(p.rstrip("/"), recursive=False))
    scheme = "s3://" if prefix.startswith("s3://") else ""
    return sorted(scheme + i.path for i in infos if i.type == pafs.FileType.File)


def parquet_file(path: str):
    """``pyarrow.parquet.ParquetFile`` over a path or URL (footer read once, ranged reads after)."""
    import pyarrow.parquet as pq

    fs, p = resolve(path)
    return pq.ParquetFile(fs.open_input_file(p), pre_buffer=False)
