"""Cost of the read-time shard checksums: stream a 10k-variant store with and without them.

Every reader of an activation store checks a shard's sha256 against the index the first
time it opens the shard (``ActivationStore.open(path)``, the default). The baseline is
the same stream with the check off (``ActivationStore.open(path, verify_reads=False)``,
the behaviour before read-time checks). Both stream every tensor of every stored
variant through ``iter_batches`` from a fresh store object (so every shard is hashed
once), with the files in the page cache (the store was just written), alternating
baseline and checked runs and keeping each one's least time. Prints the ratio; exits
non-zero when the two streams differ in any value.

Two workloads: the bare stream (the worst case: nothing but reading), and what
``probe apply`` does (a covariance probe, h=16, p=16, scoring every variant through
``predict``), where the hashing thread overlaps with the probe's compute.

Store: EVEE ``evee_diff`` layout (``diff [2,K,d]`` fp16, ``positions``, ``mean``,
``loss_diff``), 10,000 variants, shards of 64.

Run: python benchmarks/bench_store_verify.py [--n 10000 --K 32 --d 128 --repeat 3]
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import tempfile
import time
from pathlib import Path

import torch


def make_store(path: Path, n: int, K: int, d: int, shard: int, seed: int = 0) -> int:
    """Write an evee_diff-layout store of ``n`` random variants; returns its size in bytes."""
    from biointerp.store import ActivationStore

    st = ActivationStore.create(path, {"model": "synthetic", "layer": "blocks.0", "K": K, "d": d,
                                       "view": "evee_diff"})
    g = torch.Generator().manual_seed(seed)
    for s in range(0, n, shard):
        m = min(shard, n - s)
        st.write_shard([f"chr1:{s + i + 1}:A:C" for i in range(m)], {
            "diff": torch.randn(m, 2, K, d, generator=g).half(),
            "positions": torch.randint(0, 10_000, (m, 2, K), generator=g),
            "mean": torch.randn(m, 2, 3, d, generator=g).half(),
            "loss_diff": torch.randn(m, 2, K, generator=g),
        })
    return sum(p.stat().st_size for p in path.glob("shard-*.safetensors"))


def stream(path: Path, verify: bool, batch_size: int) -> tuple[float, int]:
    """Time one full stream (every tensor of every variant) from a fresh store object."""
    from biointerp.store import ActivationStore

    t = time.perf_counter()
    st = ActivationStore.open(path, verify_reads=verify)
    rows = 0
    for ids, _ in st.iter_batches(None, batch_size):
        rows += len(ids)
    return time.perf_counter() - t, rows


def apply_probe(path: Path, verify: bool, batch_size: int, probe) -> tuple[float, int]:
    """Time scoring every stored variant with ``probe`` (``probe apply``'s path) from a fresh store object."""
    from biointerp.probes.training import predict
    from biointerp.store import ActivationStore

    t = time.perf_counter()
    st = ActivationStore.open(path, verify_reads=verify)
    pred = predict(probe, st, "diff", None, {"pathogenicity": {"kind": "binary"}}, batch_size)
    return time.perf_counter() - t, len(pred)


def digest(path: Path, verify: bool, batch_size: int) -> str:
    """sha256 of every value streamed (untimed), to check that both ways read the same."""
    from biointerp.store import ActivationStore

    h = hashlib.sha256()
    for ids, b in ActivationStore.open(path, verify_reads=verify).iter_batches(None, batch_size):
        h.update("\n".join(ids).encode())
        for k in sorted(b):
            h.update(b[k].contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000, help="variants in the store")
    ap.add_argument("--K", type=int, default=32)
    ap.add_argument("--d", type=int, default=128)
    ap.add_argument("--shard-size", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", default=None, help="where to write the store (default: a temporary folder)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    root = Path(args.dir or tempfile.mkdtemp(prefix="bench_store_verify_"))
    path = root / "store"
    shutil.rmtree(path, ignore_errors=True)
    try:
        t = time.perf_counter()
        size = make_store(path, args.n, args.K, args.d, args.shard_size)
        print(f"store: {args.n} variants, {size / 1e6:.0f} MB in {-(-args.n // args.shard_size)} shards "
              f"(written in {time.perf_counter() - t:.1f} s)")
        same = digest(path, True, args.batch_size) == digest(path, False, args.batch_size)  # also warms the cache
        from biointerp.probes.covariance import CovarianceProbe

        torch.manual_seed(0)
        probe = CovarianceProbe(args.d, 16, 16).eval()
        runs = {"stream": lambda v: stream(path, v, args.batch_size),
                "probe apply": lambda v: apply_probe(path, v, args.batch_size, probe)}
        runs["probe apply"](True)  # warm-up (imports)
        for name, run in runs.items():
            best = {False: float("inf"), True: float("inf")}
            for _ in range(args.repeat):
                for verify in (False, True):
                    dt, rows = run(verify)
                    assert rows == args.n
                    best[verify] = min(best[verify], dt)
            print(f"[{name}] baseline (no checksum check): {best[False]:.3f} s   "
                  f"ours (sha256 of every shard on first open): {best[True]:.3f} s   "
                  f"ratio {best[True] / best[False]:.2f}x  "
                  f"(+{1e3 * (best[True] - best[False]) / args.n:.3f} ms per variant)")
        print(f"values identical (sha256 of every streamed value, both ways): {same}")
        return 0 if same else 1
    finally:
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
