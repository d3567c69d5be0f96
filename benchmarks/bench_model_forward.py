"""Forward throughput of the native StripedHyena 2 and the speed-up of prefix reuse.

Model: the real Evo 2 7B block pattern (32 blocks: hcs hcm hcl attn …, attention at
3/10/17/24/31, 128-tap hcm, 16-state hcl, 7-tap hcs), width scaled down to fit a CPU.
Window of ``--length`` bp (default 8,192) with a SNV at ``length // 2``.

Measured (best of ``--repeats``):
* ours: ``forward`` tokens/s;
* prefix reuse: ``forward_suffix`` of the variant from the reference's prefix state vs the
  baseline, a full ``forward`` of the variant window (what scoring does without reuse);
* reference + variants: ``prefill(ref) + forward_suffix(alts)`` vs baseline ``forward(ref) + forward(alts)``.

Run: ``.venv/bin/python benchmarks/bench_model_forward.py [--quick] [--device cuda --dtype bf16]``
"""

from __future__ import annotations

import argparse
import time

import torch

from biointerp.models import StripedHyenaModel, random_model, tiny_config


def timed(fn, device: str) -> float:
    """Seconds for ``fn()``: CUDA wall time, or on CPU the process CPU time (with one
    intra-op thread this is the compute time, robust to other jobs sharing the CPU)."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        return time.perf_counter() - t
    clock = time.process_time if torch.get_num_threads() == 1 else time.perf_counter
    t = clock()
    fn()
    return clock() - t


def best_times(fns: dict, repeats: int, device: str) -> dict[str, float]:
    """Best time of each function, the runs interleaved so that load changes hit all alike."""
    best = {k: float("inf") for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            best[k] = min(best[k], timed(fn, device))
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="2,048 bp window, width 64 (seconds)")
    ap.add_argument("--length", type=int, default=8192)
    ap.add_argument("--hidden", type=int, default=128, help="model width (7B: 4096)")
    ap.add_argument("--heads", type=int, default=4, help="attention heads (head dim 32 by default)")
    ap.add_argument("--batch", type=int, default=1, help="variants per suffix call")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads (default 1: stable timings on a shared CPU; 0 = torch default)")
    args = ap.parse_args()
    if args.quick:
        args.length, args.hidden, args.heads, args.repeats = 2048, 64, 4, 2
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32

    cfg = tiny_config(hidden_size=args.hidden, num_layers=32, num_attention_heads=args.heads,
                      inner_mlp_size=16 * ((11 * args.hidden // 4 + 15) // 16))
    model = StripedHyenaModel(random_model(cfg, seed=0), name="bench-7b-pattern",
                              device=args.device, dtype=dtype)
    n_params = sum(p.numel() for p in model.module.parameters())
    L, pos = args.length, args.length // 2
    g = torch.Generator().manual_seed(0)
    ref = torch.tensor([65, 67, 71, 84])[torch.randint(0, 4, (1, L), generator=g)]
    alt = ref.repeat(args.batch, 1)
    alt[:, pos] = torch.where(alt[:, pos] == 65, 67, 65)
    ref, alt = ref.to(args.device), alt.to(args.device)

    print(f"model: 32 blocks (7B pattern {''.join('SMLA'[['hcs','hcm','hcl','attn'].index(k)] for k in cfg.layer_kinds())}), "
          f"d={args.hidden}, heads={args.heads}, mlp={cfg.inner_mlp_size}, {n_params/1e6:.1f}M params, "
          f"{args.device} {args.dtype}, threads={torch.get_num_threads()}")
    print(f"window {L} bp, variant at {pos}, {args.batch} variant(s) per call")

    prefix = model.prefill(ref)
    model.forward_suffix(prefix, alt, pos)  # warm-up (fills the long-filter prefix response)
    t = best_times({"full": lambda: model.forward(alt), "suffix": lambda: model.forward_suffix(prefix, alt, pos),
                    "prefill": lambda: model.prefill(ref), "ref": lambda: model.forward(ref)},
                   args.repeats, args.device)
    t_full, t_suffix, t_prefill, t_ref = t["full"], t["suffix"], t["prefill"], t["ref"]
    clock = "wall" if args.device.startswith("cuda") or torch.get_num_threads() > 1 else "CPU"
    print(f"ours   full forward          : {t_full:8.3f} s {clock}  {args.batch * L / t_full:10.0f} tokens/s")
    print(f"ours   prefill (reference)   : {t_prefill:8.3f} s  (full forward of ref: {t_ref:.3f} s; "
          f"state {prefix.nbytes / 2**20:.0f} MiB)")
    print(f"ours   forward_suffix @ {pos:<5}: {t_suffix:8.3f} s")

    full = model.forward(alt)
    part = model.forward_suffix(prefix, alt, pos)
    err = (part.logits - full.logits[:, pos:]).abs().max().item()
    scale = max(1.0, full.logits.abs().max().item())
    print(f"check  suffix vs full logits : max abs err {err:.2e} (max |logit| {scale:.1f})")
    print(f"RATIO  prefix reuse vs baseline (full forward of the variant window): "
          f"{t_full / t_suffix:.2f}x")
    print(f"RATIO  reference + {args.batch} variant(s) (prefill+suffix vs full forwards of ref and variants): "
          f"{(t_ref + t_full) / (t_prefill + t_suffix):.2f}x")


if __name__ == "__main__":
    main()
