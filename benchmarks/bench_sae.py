"""SAE training from an activation store: biointerp (lightning, streamed through a bounded
shuffle buffer) vs a plain re-implementation (the formulas in a bare PyTorch loop over
the whole store loaded into memory, as a notebook would do).

Stores of growing size hold EVEE-shaped tensors [2, 3, K, d] of synthetic activations
(sparse sums of hidden dictionary atoms plus noise). Each (way, size) runs in its own
process so peak RSS is its own. Reports tokens/s (process CPU time, including imports and
store reads: this machine's cores are shared) and, apart, the training loop alone (wall, after imports
and set-up), peak RSS, and the explained variance both reach on held-out rows.
Exit 1 if the two ways' explained variance differs by more than --tol, if biointerp's
encoder differs from the plain formulas on the same weights, or if biointerp's peak
memory grows by more than 25% from the smallest to the largest store.

    python benchmarks/bench_sae.py [--sizes 500 2000 8000] [--steps 200]
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

D, K_POS, HIDDEN, K = 64, 32, 256, 8


def make_store(path: Path, n_variants: int, seed: int = 0) -> None:
    import torch

    from biointerp.store import ActivationStore

    gen = torch.Generator().manual_seed(seed)
    atoms = torch.randn(512, D, generator=torch.Generator().manual_seed(123))
    atoms = atoms / atoms.norm(dim=1, keepdim=True)
    st = ActivationStore.create(path, {"model": "synthetic", "d": D, "view": "evee"})
    for s in range(0, n_variants, 250):
        n = min(250, n_variants - s)
        rows = n * 2 * 3 * K_POS
        idx = torch.randint(0, 512, (rows, 6), generator=gen)
        mag = torch.rand(rows, 6, generator=gen) * 3
        x = (atoms[idx] * mag[..., None]).sum(1) + 0.05 * torch.randn(rows, D, generator=gen) + 1.0
        st.write_shard([f"v{s + i}" for i in range(n)], {"acts": x.reshape(n, 2, 3, K_POS, D)})


def held_out(seed: int = 99):
    import torch

    p = Path(tempfile.mkdtemp()) / "held"
    make_store(p, 50, seed)
    from biointerp.store import ActivationStore

    _, t = ActivationStore.open(p).read(["acts"])
    return t["acts"].reshape(-1, D)


def ev(encode, decode, x) -> float:
    import torch

    with torch.no_grad():
        r = decode(encode(x))
    return float(1 - (r - x).pow(2).sum() / (x - x.mean(0)).pow(2).sum())


def run_ours(store: Path, steps: int, batch: int, engine: str = "lightning") -> dict:
    import torch

    from biointerp.features.train import StoreActivations, train_sae

    c = time.process_time()
    src = StoreActivations(store, "acts", batch_size=batch, buffer_tokens=16 * batch)
    sae, rep = train_sae(src, D, HIDDEN, K, steps=steps, lr=1e-3, engine=engine)
    cpu = time.process_time() - c
    x = held_out()
    plain = torch.relu(x * sae.input_scale @ sae.W + sae.b_enc)
    n = K * x.shape[0]
    top = plain.flatten().topk(n)
    f_plain = torch.zeros_like(plain.flatten()).scatter(0, top.indices, top.values).reshape(plain.shape)
    same = bool(torch.allclose(sae.encode(x), f_plain, atol=1e-5))
    return {"tokens": rep["tokens"], "cpu_s": cpu, "loop_tok_s": rep["tokens_per_s"], "ev": ev(sae.encode, sae.decode, x),
            "encoder_matches_formula": same}


def run_plain(store: Path, steps: int, batch: int) -> dict:
    """The formulas in a bare loop over the whole store in memory."""
    import torch

    from biointerp.store import ActivationStore

    torch.manual_seed(0)
    c = time.process_time()
    _, t = ActivationStore.open(store).read(["acts"])
    X = t["acts"].reshape(-1, D).float()
    scale = math.sqrt(D) / float(X.norm(dim=1).mean())
    X = X * scale
    W = torch.randn(D, HIDDEN)
    W = torch.nn.Parameter(0.1 * W / W.norm(dim=0, keepdim=True))
    b_dec = torch.nn.Parameter(X[:batch].mean(0).clone())
    b_enc = torch.nn.Parameter(-(b_dec.detach() @ W.detach()))
    opt = torch.optim.Adam([W, b_enc, b_dec], lr=1e-3)

    def encode(x):
        f = torch.relu(x @ W + b_enc)
        top = f.flatten().topk(K * x.shape[0])
        return torch.zeros_like(f.flatten()).scatter(0, top.indices, top.values).reshape(f.shape)

    tokens = 0
    t_loop = time.perf_counter()
    for step in range(steps):
        x = X[torch.randint(0, len(X), (batch,))]
        r = encode(x) @ W.T + b_dec
        loss = (r - x).pow(2).sum(-1).mean() / (x - x.mean(0)).pow(2).sum(-1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        tokens += batch
    loop_tok_s = tokens / (time.perf_counter() - t_loop)
    cpu = time.process_time() - c
    xh = held_out() * scale
    return {"tokens": tokens, "cpu_s": cpu, "loop_tok_s": loop_tok_s, "ev": ev(encode, lambda f: f @ W.T + b_dec, xh)}


def child(way: str, store: str, steps: int, batch: int) -> None:
    import torch

    torch.set_num_threads(1)
    if way == "plain":
        out = run_plain(Path(store), steps, batch)
    else:
        out = run_ours(Path(store), steps, batch, "plain" if way == "biointerp-plain-engine" else "lightning")
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(out))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[500, 2000, 8000], help="variants per store")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--tol", type=float, default=0.05, help="max |EV difference| between the two ways")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a.child[0], a.child[1], a.steps, a.batch)
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="bench_sae_"))
    rows, ok = [], True
    for n in a.sizes:
        store = tmp / f"store{n}"
        make_store(store, n)
        mb = sum(f.stat().st_size for f in store.glob("*.safetensors")) / 2**20
        res = {}
        for way in ("biointerp", "biointerp-plain-engine", "plain"):
            p = subprocess.run([sys.executable, __file__, "--child", way, str(store), "--steps", str(a.steps),
                                "--batch", str(a.batch)], capture_output=True, text=True)
            line = [x for x in p.stdout.splitlines() if x.startswith("RESULT ")]
            if p.returncode or not line:
                print(p.stderr[-3000:])
                return 1
            res[way] = json.loads(line[0][7:])
        o, b, e = res["biointerp"], res["plain"], res["biointerp-plain-engine"]
        rows.append((n, mb, o, b))
        print(f"    biointerp --engine plain: {e['tokens'] / e['cpu_s']:8.0f} tok/s peak {e['peak_rss_mb']:6.0f} MB "
              f"EV {e['ev']:.3f} (speed ratio to plain {e['tokens'] / e['cpu_s'] / (b['tokens'] / b['cpu_s']):.2f})")
        print(f"store {n:>6} variants ({mb:7.1f} MB): biointerp {o['tokens'] / o['cpu_s']:8.0f} tok/s "
              f"peak {o['peak_rss_mb']:6.0f} MB EV {o['ev']:.3f} | plain {b['tokens'] / b['cpu_s']:8.0f} tok/s "
              f"peak {b['peak_rss_mb']:6.0f} MB EV {b['ev']:.3f} | speed ratio {o['tokens'] / o['cpu_s'] / (b['tokens'] / b['cpu_s']):.2f}, "
              f"memory ratio {o['peak_rss_mb'] / b['peak_rss_mb']:.2f}", flush=True)
        print(f"    training loop only (wall, after imports and set-up): biointerp {o['loop_tok_s']:8.0f} tok/s, "
              f"--engine plain {e['loop_tok_s']:8.0f}, plain {b['loop_tok_s']:8.0f} "
              f"(lightning / plain engine: {o['loop_tok_s'] / e['loop_tok_s']:.2f}; ours / plain re-implementation: "
              f"{o['loop_tok_s'] / b['loop_tok_s']:.2f})", flush=True)
        if abs(o["ev"] - b["ev"]) > a.tol:
            print(f"FAIL: explained variance differs by {abs(o['ev'] - b['ev']):.3f} > {a.tol}")
            ok = False
        if abs(e["ev"] - b["ev"]) > a.tol:
            print(f"FAIL: explained variance (plain engine) differs by {abs(e['ev'] - b['ev']):.3f} > {a.tol}")
            ok = False
        if not (o["encoder_matches_formula"] and e["encoder_matches_formula"]):
            print("FAIL: biointerp's encoder differs from the plain formulas")
            ok = False
    growth = rows[-1][2]["peak_rss_mb"] / rows[0][2]["peak_rss_mb"]
    print(f"biointerp peak memory, largest / smallest store: {growth:.2f} "
          f"(plain: {rows[-1][3]['peak_rss_mb'] / rows[0][3]['peak_rss_mb']:.2f})")
    if growth > 1.25:
        print("FAIL: biointerp's peak memory grew with the store")
        ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
