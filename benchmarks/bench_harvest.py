"""EVEE-view harvest: our recipe implementation vs the same recipe run plainly, same model, same variants.

``--recipe evee`` (default). Baseline: `biointerp.evee_plain.evee_plain`, EVEE's
public harvest (goodfire-ai/evo2-clinvar-harvest) re-implemented independently
and plainly: the reference window and the variant window (alt spliced in), each
run forward and as reverse complement: four full passes per variant at batch
size 1, nothing shared between variants; then EVEE's selection and tensors.
Ours (`biointerp.harvest.harvest(recipe="evee")`, the default): the same
tensors bit for bit, with the two reference passes run once per window
(variants at one position share them), shards written on a background thread.
Ours with prefix reuse (`reuse_prefix=True`, `--prefix-reuse`): the variant
sequences are also computed only from their first token that differs from the
reference (forward: from the allele on; reverse complement: from the allele on,
the downstream part being shared). Exit status 1 when the default is not
bitwise equal, or when the prefix-reuse tensors differ beyond: activations half
an fp16 step of each position's largest value, mean and loss_diff 1e-5
relative to the tensor's largest value (positions that tie the K-th one within
fp32 rounding may swap there; counted and printed, not a failure).

``--recipe genomic``: our genomic recipe vs `biointerp.harvest.genomic_reference`
(the same recipe with four full passes per variant).

The pass-count bound: with cost proportional to tokens at batch 1, the largest
possible speed-up is (tokens of the plain passes) / (tokens we compute), printed
for the workload.

Model: random StripedHyena 2 with the Evo 2 7B block pattern (32 blocks,
attention at 3/10/17/24/31), scaled down (d=256: narrower models make a pass
mostly per-operation overhead, which no reuse can remove); windows scaled down from EVEE's
49,152 + 16,384 bp by the same 3:1 split, K and the fixed window likewise.
Variants: ClinVar (2016-11-02) in the BRCA1 region of ../shared/data.
``--workload clinvar`` (default): all ClinVar alleles at random ClinVar
positions (~1.3 per position); ``saturation``: all three SNVs at random
ClinVar positions (a saturation-mutagenesis set); ``both``: one after the other.

    .venv/bin/python benchmarks/bench_harvest.py           # 1536+512 bp, K=64, fixed 16, d=256, 12 variants
    .venv/bin/python benchmarks/bench_harvest.py --quick   # 768+256 bp, K=32, fixed 8, d=64, 8 variants
    .venv/bin/python benchmarks/bench_harvest.py --device cuda --dtype bf16 --upstream 49152 --downstream 16384 -K 256 --fixed 64
"""

from __future__ import annotations

import argparse
from functools import partial
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"

from _workloads import add_run_args, pick_variants, saturation_variants, timed as timed_run  # noqa: E402  (benchmarks/ is on sys.path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--recipe", choices=["evee", "genomic"], default="evee")
    ap.add_argument("--n", type=int, default=12, help="variants")
    ap.add_argument("--upstream", type=int, default=1536)
    ap.add_argument("--downstream", type=int, default=512)
    ap.add_argument("-K", "--K", dest="K", type=int, default=64)
    ap.add_argument("--fixed", type=int, default=16)
    ap.add_argument("--hidden", type=int, default=256, help="model width (7B: 4096)")
    ap.add_argument("--layer", default="blocks.27")
    ap.add_argument("--region", default="17:41196312-41277500", help="ClinVar records taken from here (GRCh37; default: BRCA1)")
    ap.add_argument("--sample", choices=["random", "first"], default="random",
                    help="random positions (all their alleles) or the first records")
    ap.add_argument("--workload", choices=["clinvar", "saturation", "both"], default="clinvar",
                    help="all ClinVar alleles at random positions, or all 3 SNVs at random ClinVar positions")
    ap.add_argument("--batch-size", type=int, default=None,
                    help="sequences per model call (default: 1 on CPU, where batching the 3 suffix passes of "
                         "a position measured ~10%% more CPU time than 3 single passes at d=256, 2 kb; 8 on CUDA)")
    add_run_args(ap)
    args = ap.parse_args()
    if args.quick:
        args.n, args.upstream, args.downstream, args.K, args.fixed, args.hidden = 8, 768, 256, 32, 8, 64
    torch.set_num_threads(args.threads)
    if args.batch_size is None:
        args.batch_size = 8 if args.device.startswith("cuda") else 1
    from biointerp.genome import Genome
    from biointerp.harvest import harvest
    from biointerp.models import StripedHyenaModel, random_model, tiny_config
    from biointerp.variants import read_variants

    genome = Genome(DATA / "reference" / "brca1_region.GRCh37.fa")
    clinvar = read_variants(DATA / "variants" / "clinvar_20161102.GRCh37.vcf.gz", genome, region=args.region)
    tables = {"clinvar": lambda: pick_variants(clinvar, args.n, args.sample),
              "saturation": lambda: saturation_variants(clinvar, genome, args.n)}
    names = ["clinvar", "saturation"] if args.workload == "both" else [args.workload]
    L = args.upstream + args.downstream
    cfg = tiny_config(hidden_size=args.hidden, num_layers=32, num_attention_heads=max(1, args.hidden // 16),
                      max_seqlen=max(8192, L))
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[args.dtype]
    model = StripedHyenaModel(random_model(cfg, seed=0), name=f"sh2-7b-pattern-d{args.hidden}",
                              device=args.device, dtype=dtype)
    kw = dict(upstream=args.upstream, downstream=args.downstream, K=args.K, fixed=args.fixed)
    tmp = Path(tempfile.mkdtemp(prefix="bench_harvest_"))
    first = tables[names[0]]()
    baseline(args.recipe)(model, genome, first.head(1), args.layer, **kw)  # warm-up
    harvest(model, genome, first.head(1), args.layer, recipe=args.recipe, store=tmp / "warm", progress=False, **kw)

    ok = True
    for w in names:
        ok &= run_case(args, model, genome, w, tables[w](), kw, tmp / w)
    if not ok:
        raise SystemExit("FAILED: the two implementations differ beyond the stated tolerance")


def baseline(recipe: str):
    """The plain version of ``recipe`` (four full passes per variant, batch 1, nothing shared)."""
    if recipe == "evee":
        from biointerp.evee_plain import evee_plain

        return evee_plain
    from biointerp.harvest import genomic_reference

    return genomic_reference


def exact_agreement(base: dict, got: dict) -> tuple[bool, str]:
    """The evee recipe's acceptance: identical positions (and order), activations within
    fp16 rounding, mean and loss_diff within 1e-5 of the tensor's largest value (compared at
    the variant-directions whose positions agree)."""
    same_pos = torch.equal(base["positions"], got["positions"])
    keep = (base["positions"] == got["positions"]).all(-1)  # [N, 2] variant-directions that agree
    n_var = int((~keep).any(-1).sum())
    a, b = got["acts"].float(), base["acts"].float()
    # within fp16 rounding: below half an fp16 step of each position's largest value (what storing
    # that activation row in fp16 changes anyway)
    fp16_ok = bool(((a - b).abs() <= b.abs().amax(-1, keepdim=True) * 2.0 ** -11 + 1e-6)[keep].all())
    rel = {k: float((got[k].float() - base[k].float())[keep].abs().max()
                    / base[k].float()[keep].abs().max().clamp_min(1e-30)) for k in ("acts", "loss_diff")}
    rel["mean"] = float((got["mean"] - base["mean"]).abs().max() / base["mean"].abs().max())
    ok = fp16_ok and rel["mean"] < 1e-5 and rel["loss_diff"] < 1e-5
    swaps = ""
    if not same_pos:
        sw = [len(set(base["positions"][i, d].tolist()) - set(got["positions"][i, d].tolist()))
              for i, d in (~keep).nonzero().tolist()]
        swaps = (f" ({n_var} of {base['positions'].shape[0]} variants, {int((~keep).sum())} variant-directions "
                 f"differ, by {sum(sw)} position(s) in all; the rest compared)")
    msg = (f"positions identical: {same_pos}{swaps}; acts within fp16 rounding: {fp16_ok} (max |diff| "
           f"{float((a - b)[keep].abs().max()):.1e}); max |diff| / max |value|: acts {rel['acts']:.1e}, mean "
           f"{rel['mean']:.1e}, loss_diff {rel['loss_diff']:.1e} -> " + ("PASS" if ok else "FAIL"))
    return ok, msg


def token_bound(genome, table, kw: dict, recipe: str, reuse: bool = True) -> tuple[float, str]:
    """Tokens the plain passes compute / tokens ours compute: reference passes once per window;
    variant passes in full, or with ``reuse`` from the first differing token (fwd, and likewise
    on the reverse complements)."""
    from biointerp.genome import reverse_complement
    from biointerp.windows import prepare_variants

    def lcp(a: str, b: str) -> int:
        n = min(len(a), len(b))
        return next((i for i in range(n) if a[i] != b[i]), n)

    preps = [p for p in prepare_variants(genome, table, kw["upstream"], kw["downstream"],
                                         "splice" if recipe == "evee" else "same_length") if p.status == "ok"]
    plain = sum(2 * (len(p.ref_seq) + len(p.alt_seq)) for p in preps)
    windows = {(p.start, p.ref_seq) for p in preps}
    ours = sum(2 * len(r) for _, r in windows)
    for p in preps:
        rr, ra = reverse_complement(p.ref_seq), reverse_complement(p.alt_seq)
        if not reuse:
            ours += 2 * len(p.alt_seq)
            continue
        ours += len(p.alt_seq) - min(lcp(p.ref_seq, p.alt_seq), len(p.alt_seq) - 1)
        ours += len(ra) - min(lcp(rr, ra), len(ra) - 1)
    return plain / ours, (f"{plain:,} tokens plain (4 full passes x {len(preps)} variants) / {ours:,} tokens ours "
                          f"({2 * len(windows)} reference passes for {len(windows)} windows + variant "
                          f"{'suffixes' if reuse else 'passes'})")


def agreement(base: dict, got: dict) -> str:
    """Compare the two harvests. Top-K selection on fp32 activations could swap a position
    whose divergence ties the K-th one to within rounding (a full pass and a prefix-reuse
    pass differ by ~1e-5): count such swaps, give their divergence gap next to the
    divergence noise at common positions, and compare the tensors where both selected."""
    from biointerp.harvest import divergence

    def _divergence(views: torch.Tensor) -> torch.Tensor:  # the selection score, var_same vs ref_cross
        return divergence(views[0], views[2])

    sets_equal = swaps = 0
    worst_gap = noise = 0.0
    acts = loss = 0.0
    N = base["positions"].shape[0]
    for i in range(N):
        for d in range(2):
            pb, pg = base["positions"][i, d].tolist(), got["positions"][i, d].tolist()
            if set(pb) == set(pg):
                sets_equal += 1
            else:
                only_b = [j for j, p in enumerate(pb) if p not in set(pg)]
                only_g = [j for j, p in enumerate(pg) if p not in set(pb)]
                swaps += len(only_b)
                db = _divergence(base["acts"][i, d])[only_b]
                dg = _divergence(got["acts"][i, d])[only_g]
                gap = float((db.max() - dg.min()).abs() / db.max().abs().clamp_min(1e-300))
                worst_gap = max(worst_gap, gap)
            jg = {p: j for j, p in enumerate(pg) if p >= 0}
            div_b, div_g = _divergence(base["acts"][i, d]), _divergence(got["acts"][i, d])
            for jb, p in enumerate(pb):
                if p >= 0 and p in jg:
                    noise = max(noise, float((div_b[jb] - div_g[jg[p]]).abs() / div_b[jb].abs().clamp_min(1e-300)))
                    acts = max(acts, float((base["acts"][i, d, :, jb].float()
                                            - got["acts"][i, d, :, jg[p]].float()).abs().max()))
                    loss = max(loss, abs(float(base["loss_diff"][i, d, jb] - got["loss_diff"][i, d, jg[p]])))
    out = (f"selected positions identical in {sets_equal}/{2 * N} variant-directions; at common positions "
           f"max |diff| acts {acts:.1e}, loss_diff {loss:.1e}")
    if swaps:
        out += (f"; {swaps} position(s) swapped at the K-th place: their divergences differ by <= "
                f"{worst_gap:.1e} relative, the two implementations' divergences at the same position by up "
                f"to {noise:.1e} ({'a near-tie within rounding' if worst_gap <= noise else 'NOT a rounding tie'})")
    return out


def run_case(args, model, genome, workload: str, table, kw: dict, tmp: Path) -> bool:
    from biointerp.harvest import evee_bytes_per_variant, harvest

    print(f"[{workload}] recipe {args.recipe}; model {model.name} (32 blocks, 7B pattern) on {args.device}/"
          f"{args.dtype}, layer {args.layer}; {len(table)} variants at {table['pos'].nunique()} positions "
          f"({len(table) / table['pos'].nunique():.2f} per position); window {args.upstream}+"
          f"{args.downstream} bp, K={args.K}, fixed={args.fixed}")
    cuda = args.device.startswith("cuda")
    timed = partial(timed_run, cuda=cuda)
    plain = baseline(args.recipe)

    modes = [("exact", None), ("prefix reuse", True)] if args.recipe == "evee" else [("prefix reuse", True)]
    t_base = float("inf")
    t_ours = {m: float("inf") for m, _ in modes}
    stores = {}
    for r in range(args.repeat):  # alternate, so that a busy spell on the machine hits both
        (ids, base), t = timed(lambda: plain(model, genome, table, args.layer, **kw))
        t_base = min(t_base, t)
        for m, reuse in modes:
            stores[m], t = timed(lambda: harvest(model, genome, table, args.layer, recipe=args.recipe,
                                                 store=tmp / f"ours{r}{m[0]}", storage_dtype=torch.float32,
                                                 batch_size=args.batch_size, reuse_prefix=reuse, progress=False,
                                                 **kw))
            t_ours[m] = min(t_ours[m], t)
    name = "EVEE plain (evee_plain)" if args.recipe == "evee" else "genomic plain (genomic_reference)"
    ok = True
    for m, reuse in modes:
        got_ids, got = stores[m].read()
        assert got_ids == ids, "the two implementations stored different variants"
        n = len(ids)
        if m == "exact":
            bitwise = all(torch.equal(got[k], base[k]) for k in ("positions", "acts", "mean", "loss_diff"))
            ok &= bitwise
            msg = f"every tensor bitwise equal: {bitwise}"
        elif args.recipe == "evee":
            good, msg = exact_agreement(base, got)
            ok &= good
        else:
            msg = agreement(base, got)
        print(f"baseline  {name}, 4 full passes/variant, batch 1: {n / t_base:7.3f} variants/s ({t_base:.1f} s)")
        print(f"ours      harvest(recipe={args.recipe!r}), {m}: {n / t_ours[m]:7.3f} variants/s ({t_ours[m]:.1f} s)")
        print(f"agreement ({m}): " + msg)
        bound, how = token_bound(genome, table, kw, args.recipe, reuse=reuse is True)
        print(f"[{workload}] {m}: speed-up over the plain {args.recipe} recipe {t_base / t_ours[m]:.2f}x; "
              f"pass-count bound at batch 1 {bound:.2f}x = {how}"
              + (f" (least time of {args.repeat} alternating runs each)" if args.repeat > 1 else ""))
    few = table.head(2)
    s16 = harvest(model, genome, few, args.layer, recipe=args.recipe, store=tmp / "fp16", progress=False, **kw)
    sdiff = harvest(model, genome, few, args.layer, recipe=args.recipe, view="evee_diff", store=tmp / "diff",
                    progress=False, **kw)
    b16, bd = s16.info()["bytes_per_variant"], sdiff.info()["bytes_per_variant"]
    print(f"storage here (d={args.hidden}, K={args.K}, fp16): evee {b16 / 1e3:.1f} kB/variant, "
          f"evee_diff {bd / 1e3:.1f} kB/variant (safetensors files incl. headers)")
    print(f"storage at d=4096, K=256, fp16: evee {evee_bytes_per_variant(4096, 256) / 1e6:.2f} MB/variant "
          f"(EVEE: 12.6 MB), evee_diff {evee_bytes_per_variant(4096, 256, 'evee_diff') / 1e6:.2f} MB/variant")
    return bool(ok)


if __name__ == "__main__":
    main()
