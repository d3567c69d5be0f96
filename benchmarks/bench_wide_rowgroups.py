"""Cost of one all-heads look-up read in place, against the release's row-group size.

Takes the first ``--rows`` rows of a release shard's float columns (``--source``, e.g. one
written by ``bench_db.py --wide``), rewrites them once per row-group size (zstd) and times
reading one row with every column
(``ParquetFile.read_row_group(g).take([r])``, what ``inplace`` does), against reading
the same row from the ``packed`` row-major store format (one zstd block of 8 rows).

    .venv/bin/python benchmarks/bench_wide_rowgroups.py --source W/release/clean_shard_0.parquet \
        --rows 16384 --sizes 256,1024,4096,16384
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", type=Path, required=True, help="a release shard (Parquet)")
    ap.add_argument("--rows", type=int, default=16384)
    ap.add_argument("--sizes", default="256,1024,4096,16384", help="row-group sizes to measure")
    ap.add_argument("--reads", type=int, default=15)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    src = pq.ParquetFile(a.source)
    cols = [f.name for f in src.schema_arrow if pa.types.is_floating(f.type)]
    tbl = next(src.iter_batches(batch_size=a.rows, columns=cols))
    tbl = pa.Table.from_batches([tbl]).cast(pa.schema([(c, pa.float32()) for c in cols]))
    a.rows, a.width = tbl.num_rows, tbl.num_columns
    vals = np.column_stack([tbl.column(j).to_numpy(zero_copy_only=False) for j in range(a.width)])
    work = Path(tempfile.mkdtemp(prefix="bench_rg_"))
    res = {"rows": a.rows, "width": a.width, "load": os.getloadavg()[0], "sizes": {}}
    print(f"{a.rows:,} rows x {a.width:,} float32 columns; load {res['load']:.1f} on {os.cpu_count()} CPUs")
    for size in (int(x) for x in a.sizes.split(",")):
        p = work / f"rg{size}.parquet"
        pq.write_table(tbl, p, row_group_size=size, compression="zstd")
        pf = pq.ParquetFile(p, pre_buffer=False)
        n_rg = pf.metadata.num_row_groups
        rows = rng.integers(0, a.rows, a.reads)
        ts = []
        for r in rows:
            t = time.perf_counter()
            g, off = divmod(int(r), size)
            row = pf.read_row_group(g, use_threads=False).take([off])
            ts.append(time.perf_counter() - t)
            got = np.array([row.column(j)[0].as_py() for j in range(0, a.width, 97)], dtype=np.float32)
            assert np.array_equal(got, vals[r, ::97], equal_nan=True)
        ms = float(np.median(ts) * 1000)
        res["sizes"][size] = {"exact_all_p50_ms": ms, "file_mb": p.stat().st_size / 1e6, "row_groups": n_rg,
                              "decoded_mb_per_lookup": size * a.width * 4 / 1e6}
        print(f"  row groups of {size:6,} rows: one all-heads row in place p50 {ms:8.1f} ms "
              f"(decodes {size * a.width * 4 / 1e6:6.1f} MB), file {p.stat().st_size / 1e6:.0f} MB", flush=True)
        p.unlink()
    # the same row from the row-major packed format (8-row zstd blocks, byte-shuffled)
    from biointerp.db.wide import _shuffle, _unshuffle

    blk = [pa.compress(_shuffle(np.ascontiguousarray(vals[i:i + 8])), codec="zstd", asbytes=True)
           for i in range(0, a.rows, 8)]
    ts = []
    for r in rng.integers(0, a.rows, 200):
        t = time.perf_counter()
        b = blk[int(r) // 8]
        m = _unshuffle(pa.decompress(b, decompressed_size=8 * a.width * 4, codec="zstd", asbytes=True),
                       np.float32, 8 * a.width).reshape(8, a.width)[int(r) % 8]
        ts.append(time.perf_counter() - t)
        assert np.array_equal(m, vals[r], equal_nan=True)
    packed_b = sum(len(b) for b in blk)
    res["packed"] = {"decode_p50_ms": float(np.median(ts) * 1000), "bytes_per_value": packed_b / vals.size}
    print(f"  packed row-major (8-row zstd blocks): decode p50 {res['packed']['decode_p50_ms']:.2f} ms, "
          f"{packed_b / vals.size:.2f} B/value (a lossless second copy of the values)")
    if a.json:
        a.json.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
