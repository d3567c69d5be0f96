"""EVEE's public harvest, re-implemented plainly: the baseline for the ``evee`` recipe.

Written from the semantics of ``goodfire-ai/evo2-clinvar-harvest``
(``pipeline/harvest.py``) and sharing no code with :mod:`biointerp.harvest`:
per variant four full passes with batch size 1 (reference and variant, each
forward and as reverse complement), nothing reused between variants. Used by
``tests/test_harvest_evee.py`` (equality) and ``benchmarks/bench_harvest.py``
(speed ratio). Slow on purpose; not for production use.
"""

from __future__ import annotations

import pandas as pd
import torch
import torch.nn.functional as F

_PAIR = str.maketrans("ACGTN", "TGCAN")


def _revcomp(s: str) -> str:
    return s.translate(_PAIR)[::-1]


def _window(genome, chrom: str, pos: int, upstream: int, downstream: int) -> tuple[str, int, int]:
    """EVEE's window: ``upstream + downstream`` bases (or the whole record if shorter),
    starting ``upstream`` before the variant and shifted back inside the record at
    either end. Returns ``(sequence, offset of the variant, 0-based start)``."""
    rec = genome.segment_at(chrom, pos)
    if rec is None:
        raise ValueError(f"{chrom}:{pos} not in the reference")
    first0, end0 = rec.first - 1, rec.last  # record as a 0-based half-open range
    p0 = pos - 1
    size = min(upstream + downstream, end0 - first0)
    lo = max(first0, p0 - upstream)
    if lo + size > end0:
        lo = end0 - size
    seq = genome.fetch(chrom, lo + 1, lo + size)
    return seq, p0 - lo, lo


def _pass(model, seq: str, layer: str) -> tuple[torch.Tensor, torch.Tensor]:
    """One full forward pass: activations ``[L, d]`` fp32 and per-token loss ``[L−1]``
    (``cross_entropy(logits[:-1], ids[1:])``, so entry j is the loss of token j+1)."""
    ids, mask = model.tokenize([seq])
    out = model.forward(ids, mask, layers=[layer])
    logits = out.logits[0].float()
    loss = F.cross_entropy(logits[:-1], ids[0, 1:].to(logits.device).long(), reduction="none")
    return out.activations[layer][0, : len(seq)].float().cpu(), loss.cpu()


def _both_strands(model, seq: str, layer: str):
    """Forward pass and reverse-complement pass, the latter flipped into sense order."""
    fa, fl = _pass(model, seq, layer)
    ba, bl = _pass(model, _revcomp(seq), layer)
    return fa, ba.flip(0), fl, bl.flip(0)


def _pick(var_same, ref_same, ref_cross, k: int, lo: int, hi: int, window: int):
    """EVEE's position choice: the window first, then the lowest cosine similarity."""
    d = var_same.shape[-1]
    if hi - lo <= 0:
        return torch.zeros(3, k, d), torch.full((k,), -1, dtype=torch.long)
    w = min(window, hi - lo, k)
    keep = list(range(lo, lo + w))
    rest_lo = lo + w
    n_rest = min(k - w, max(0, hi - rest_lo))
    if n_rest > 0:
        cos = F.cosine_similarity(var_same[rest_lo:hi], ref_same[rest_lo:hi], dim=-1)
        keep += (cos.topk(n_rest, largest=False).indices + rest_lo).tolist()
    keep = sorted(keep)
    idx = torch.tensor(keep, dtype=torch.long)
    acts = torch.zeros(3, k, d)
    acts[0, : len(keep)] = var_same[idx]
    acts[1, : len(keep)] = ref_same[idx]
    acts[2, : len(keep)] = ref_cross[idx]
    pos = torch.full((k,), -1, dtype=torch.long)
    pos[: len(keep)] = idx
    return acts, pos


def _loss_diff(var_loss, ref_loss, pos):
    out = torch.zeros(pos.shape[0])
    for i, j in enumerate(pos.tolist()):
        if 0 <= j < len(var_loss) and j < len(ref_loss):
            out[i] = var_loss[j] - ref_loss[j]
    return out


def evee_plain(model, genome, variants: pd.DataFrame, layer: str, upstream: int = 49152,
               downstream: int = 16384, K: int = 256, fixed: int = 64
               ) -> tuple[list[str], dict[str, torch.Tensor]]:
    """EVEE tensors for every row of ``variants`` whose window can be built.

    Returns ``(variant_ids, {positions [N,2,K], acts [N,2,3,K,d], mean [N,2,3,d],
    loss_diff [N,2,K]})`` in fp32 (acts not rounded to fp16). Rows whose REF
    disagrees with the reference or that fall outside it are skipped, as EVEE
    logs and skips them.
    """
    ids: list[str] = []
    rows: list[dict[str, torch.Tensor]] = []
    for r in variants.itertuples(index=False):
        if getattr(r, "status", "ok") != "ok":
            continue
        ref, alt = str(r.ref).upper(), str(r.alt).upper()
        try:
            seq, off, lo = _window(genome, str(r.chrom), int(r.pos), upstream, downstream)
        except ValueError:
            continue
        if seq[off:off + len(ref)] != ref:
            continue
        var = seq[:off] + alt + seq[off + len(ref):]
        rf, rb, rfl, rbl = _both_strands(model, seq, layer)
        vf, vb, vfl, vbl = _both_strands(model, var, layer)
        shared = min(len(seq), len(var))
        acts_f, pf = _pick(vf, rf, rb, K, off + max(len(ref), len(alt)), shared, fixed)
        acts_b, pb = _pick(vb, rb, rf, K, 0, off, 0)
        d = rf.shape[-1]

        def m(x):
            return F.rms_norm(x[:shared], (d,)).mean(0)

        mean = torch.stack([torch.stack([m(vf), m(rf), m(rb)]), torch.stack([m(vb), m(rb), m(rf)])])
        pos = torch.stack([pf, pb])
        pos = torch.where(pos >= 0, pos + lo, pos)
        loss = torch.stack([_loss_diff(vfl, rfl, pf), _loss_diff(vbl, rbl, pb)])
        rows.append({"positions": pos, "acts": torch.stack([acts_f, acts_b]), "mean": mean, "loss_diff": loss})
        ids.append(str(getattr(r, "variant_id", f"{r.chrom}:{r.pos}:{r.ref}:{r.alt}")))
    if not rows:
        return ids, {}
    return ids, {k: torch.stack([x[k] for x in rows]) for k in rows[0]}
