"""Probe benchmarks.

1. Linear probe (torch, full-batch L-BFGS) vs scikit-learn ``LogisticRegression``
   (lbfgs) on the same standardised features and split, same L2 strength:
   training time of each, test AUROC of each, ratio.
2. Training memory vs store size: a covariance probe trained with lightning,
   streaming from activation stores of two sizes (peak RSS of a fresh process
   each), against the baseline that loads the store in memory first.

Run: .venv/bin/python benchmarks/bench_probes.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def bench_linear(n: int, d: int, l2: float = 1e-3, seed: int = 0) -> dict:
    from sklearn.linear_model import LogisticRegression

    from biointerp.probes import auroc, fit_linear

    rng = np.random.default_rng(seed)
    X = (rng.normal(size=(n, d)) * rng.uniform(0.2, 3, size=d)).astype(np.float32)
    w = rng.normal(size=d) * (rng.uniform(size=d) < 0.2)
    y = (X @ w / np.sqrt(d) + rng.logistic(size=n) > 0).astype(int)
    n_tr = int(0.7 * n)
    Xtr, Xte, ytr, yte = X[:n_tr], X[n_tr:], y[:n_tr], y[n_tr:]
    t = time.perf_counter()
    probe = fit_linear(Xtr, ytr, l2=l2, method="lbfgs")
    t_ours = time.perf_counter() - t
    with torch.no_grad():
        s_ours = probe(torch.from_numpy(Xte))[:, 0].numpy()
    mu, sd = Xtr.mean(0), Xtr.std(0)
    t = time.perf_counter()
    sk = LogisticRegression(C=1.0 / (l2 * n_tr), max_iter=2000).fit((Xtr - mu) / sd, ytr)
    t_sk = time.perf_counter() - t
    s_sk = sk.decision_function((Xte - mu) / sd)
    return {"n": n, "d": d, "auroc_ours": auroc(yte, s_ours), "auroc_sklearn": auroc(yte, s_sk),
            "time_ours_s": t_ours, "time_sklearn_s": t_sk}


def make_store(path: Path, n: int, K: int, d: int, shard: int = 100, seed: int = 0) -> None:
    from biointerp.store import ActivationStore

    st = ActivationStore.create(path, {"model": "synthetic", "layer": "blocks.0", "K": K, "d": d})
    g = torch.Generator().manual_seed(seed)
    for s in range(0, n, shard):
        m = min(shard, n - s)
        y = torch.randint(0, 2, (m,), generator=g)
        ref = torch.randn(m, 2, K, d, generator=g)
        z = torch.randn(m, 2, K, d, generator=g)
        z[..., 1] = 0.8 * (2 * y - 1).float()[:, None, None] * z[..., 0] + 0.6 * z[..., 1]
        acts = torch.stack([ref + 0.1 * z, ref, ref], 2).half()
        ids = [f"chr1:{s + i + 1}:A:G:{int(y[i])}" for i in range(m)]  # label encoded in the id for the child
        st.write_shard(ids, {"acts": acts, "positions": torch.arange(K).expand(m, 2, K).clone()})


def _rss_mb() -> float:
    import os

    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class _RssSampler:
    """Highest current RSS seen by a 5 ms sampling thread (ru_maxrss also counts import-time peaks)."""

    def __enter__(self):
        import threading

        self.peak, self._stop = _rss_mb(), threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, _rss_mb())

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, _rss_mb())


def child_train(store: str, mode: str) -> None:
    """Train in this (fresh) process; print peak RSS as JSON."""
    import pandas as pd

    from biointerp.probes import InMemorySource, train_probe
    from biointerp.store import ActivationStore

    torch.set_num_threads(1)
    st = ActivationStore.open(store)
    ids = st.index["variant_id"].tolist()
    labels = pd.DataFrame({"label": [int(v.rsplit(":", 1)[1]) for v in ids]}, index=ids)
    split = pd.Series(np.where(np.arange(len(ids)) % 10 == 0, "val", "train"), index=ids)
    rss0 = _rss_mb()
    with _RssSampler() as rss:
        source = store
        if mode == "memory":  # baseline: load the whole store first
            got_ids, t = st.read(["acts", "positions"])
            source = InMemorySource(got_ids, t)
        t0 = time.perf_counter()
        res = train_probe(source, labels, split, kind="covariance", hparams={"h": 16, "p": 32}, max_epochs=2,
                          batch_size=32, lr=1e-2, patience=5, shuffle_buffer=4)
    print(json.dumps({"peak_rss_mb": rss.peak, "rss_before_train_mb": rss0,
                      "process_max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "train_s": time.perf_counter() - t0, "n": len(ids), "val_auroc": res.info.get("val_auroc")}))


def run_child(store: Path, mode: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", str(store), mode], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes (CI)")
    ap.add_argument("--child", nargs=2, metavar=("STORE", "MODE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child_train(*args.child)
        return
    torch.set_num_threads(1)

    n, d = (4000, 128) if args.quick else (20000, 512)
    r = bench_linear(n, d)
    print(f"== linear probe vs scikit-learn LogisticRegression (n={r['n']}, d={r['d']}, 70/30 split, same L2)")
    print(f"  AUROC   ours {r['auroc_ours']:.4f}   sklearn {r['auroc_sklearn']:.4f}   "
          f"|diff| {abs(r['auroc_ours'] - r['auroc_sklearn']):.4f}")
    print(f"  train   ours {r['time_ours_s']:.3f} s   sklearn {r['time_sklearn_s']:.3f} s   "
          f"ratio sklearn/ours {r['time_sklearn_s'] / r['time_ours_s']:.2f}x")

    K, dm = (32, 128) if args.quick else (32, 256)
    sizes = (500, 2000) if args.quick else (1000, 4000)
    print(f"== covariance probe training memory vs store size (EVEE acts K={K}, d={dm}, fp16; 2 epochs, batch 32)")
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for n_store in sizes:
            p = Path(tmp) / f"store{n_store}"
            make_store(p, n_store, K, dm)
            mb = sum(f.stat().st_size for f in p.glob("shard-*.safetensors")) / 2**20
            s = run_child(p, "stream")
            m = run_child(p, "memory")
            rows.append((n_store, mb, s, m))
            print(f"  store {n_store:>5} variants ({mb:7.1f} MB, RSS before training {s['rss_before_train_mb']:.0f} MB): "
                  f"streaming peak RSS {s['peak_rss_mb']:7.1f} MB "
                  f"({s['train_s']:.1f} s) | load-in-memory baseline {m['peak_rss_mb']:7.1f} MB ({m['train_s']:.1f} s)")
        (n1, mb1, s1, m1), (n2, mb2, s2, m2) = rows
        print(f"  store x{n2 / n1:.0f}: streaming RSS x{s2['peak_rss_mb'] / s1['peak_rss_mb']:.2f} "
              f"(+{s2['peak_rss_mb'] - s1['peak_rss_mb']:.0f} MB), baseline RSS x{m2['peak_rss_mb'] / m1['peak_rss_mb']:.2f} "
              f"(+{m2['peak_rss_mb'] - m1['peak_rss_mb']:.0f} MB); at the large size baseline/streaming "
              f"{m2['peak_rss_mb'] / s2['peak_rss_mb']:.2f}x")


if __name__ == "__main__":
    main()
