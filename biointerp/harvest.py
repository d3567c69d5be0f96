"""Activation harvest: EVEE views (two recipes) and simple poolings into an ActivationStore.

EVEE views (``view="evee"`` stores ``acts [2, 3, K, d]`` per variant: direction
fwd/bwd x three views x K positions x d; ``view="evee_diff"`` stores only the
recipe's variant-minus-reference diff ``[2, K, d]``). Which positions and views
are taken is the ``recipe``; the store's manifest records it.

``recipe="evee"`` (default) reproduces EVEE's public harvest
(``goodfire-ai/evo2-clinvar-harvest``, ``pipeline/harvest.py``):

* windows: reference ``[pos − upstream, pos + downstream)`` (shifted at contig
  edges); the variant window is the reference window with ``alt`` spliced in,
  so an indel changes its length; ``shared_len = min(len(var), len(ref))``.
* each window runs forward and as its reverse complement; the reverse pass's
  activations and per-token losses are flipped back to sense order.
* views at a sequence index ``j``: ``var_same`` (variant, selecting strand),
  ``ref_same`` (reference, selecting strand, same index), ``ref_cross``
  (reference from the *other strand's* pass, same index).
* fwd positions: the fixed window ``[a, a + fixed)`` with ``a = offset +
  max(len(ref), len(alt))``, plus the ``K − fixed`` indices of
  ``[a + fixed, shared_len)`` with the lowest cosine similarity ``var_same`` vs
  ``ref_same`` (``torch.nn.functional.cosine_similarity`` in fp32, as EVEE);
  bwd positions: the ``K`` lowest-similarity indices of ``[0, offset)`` (bwd
  views). Both sorted ascending; stored as ``window_start + j`` (0-based; −1 =
  padding), i.e. sequence indices, not re-aligned after an indel.
* ``mean [2, 3, d]`` fp32: ``mean(rms_norm(x)[:shared_len])`` per view and
  direction (``torch.nn.functional.rms_norm``, default eps), over the whole
  shared window.
* ``loss_diff [2, K]`` fp32: per-token cross-entropy ``loss[j]`` = loss of token
  ``j + 1`` (fwd) or, flipped, of base ``j`` in the reverse pass (bwd);
  ``var_loss[j] − ref_loss[j]`` at the selected indices (0 where ``j`` is past
  either loss array, and at padding).
* ``view="evee_diff"`` stores ``var_same − ref_same`` (EVEE's diff).

``recipe="genomic"`` (ours): the variant window keeps the reference's length
(cut or extended downstream from the genome) and the variant is compared with
the reference at the *same genomic base*, so the position of an indel does not
show as a shifted index. Views ``var_same``, ``ref_same`` (same sequence index)
and ``ref_aligned`` (reference at the aligned genomic base, index ``a_ref + i``
for variant index ``a_var + i``); fwd keeps ``fixed`` positions after the
anchor then the most divergent (``1 − cos`` in difference form, see
:func:`divergence`), bwd the ``K − fixed_rev`` most divergent upstream
positions, stored nearest first (descending genomic position); ``mean`` over
the selected positions; ``loss_diff`` = ``−log p`` of the same genomic base,
variant minus reference; ``view="evee_diff"`` stores ``var_same − ref_aligned``.
This was the only recipe before recipes were named: stores without a
``recipe`` field are this recipe (see :func:`store_recipe`).

Store tensors: ``acts [N,2,3,K,d]`` (fp16 by default) or ``diff [N,2,K,d]``,
``positions [N,2,K]`` int64, ``mean [N,2,3,d]`` (evee: fp32; genomic: storage
dtype), ``loss_diff [N,2,K]`` fp32.

Poolings (``view="variant" | "window_mean" | "mean"``, any number of layers
in one pass): the variant-sequence activation at the last allele base, the
mean over ``[offset − pool_window, offset + len(alt) + pool_window)``, or the
mean over the whole window; stored as ``emb.<layer>.<pooling> [N, d]`` and the
reference sequence's as ``emb.<layer>.<pooling>.ref``.

Speed: variants sharing a reference window share its two passes (bitwise
exact). With prefix reuse (default for poolings and the genomic recipe, opt-in
for ``evee``) the variant sequences are computed only from their first token
that differs from the reference (fwd: from the allele on; reverse complement:
for ``evee``, from the allele on in reverse order, the downstream part being
shared); numbers then equal full passes up to float rounding, which can swap a
position whose selection score ties the K-th one within rounding. The poolings
need no per-token loss, so on models that can stop early (the native StripedHyena)
their passes run only the blocks up to the deepest harvested layer (the same
activations, bit for bit; ``blocks.4`` of the 8-block demo model skips 3 blocks
and the unembedding). Shards are written on a background thread while the model runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from biointerp.genome import Genome, reverse_complement
from biointerp.scoring import _lcp
from biointerp.store import ActivationStore, store_recipe  # noqa: F401  (store_recipe re-exported)
from biointerp.windows import PreparedVariant, prepare_variants

VIEWS = ("evee", "evee_diff", "variant", "window_mean", "mean")
#: harvest recipes for the EVEE views (module doc); ``evee`` is the default
RECIPES = ("evee", "genomic")
DEFAULT_RECIPE = "evee"
#: the three views of ``acts`` per recipe (index 0, 1, 2)
RECIPE_VIEWS = {"evee": ["var_same", "ref_same", "ref_cross"],
                "genomic": ["var_same", "ref_same", "ref_aligned"]}
#: what ``view="evee_diff"`` stores per recipe
RECIPE_DIFF = {"evee": "var_same - ref_same", "genomic": "var_same - ref_aligned"}
#: EVEE's published defaults (7B: blocks.27; 20B: blocks.20, d = 8,192)
EVEE_DEFAULTS = {"upstream": 49152, "downstream": 16384, "K": 256, "fixed": 64, "layer_7b": "blocks.27",
                 "layer_20b": "blocks.20"}


def rms_norm(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """``x / sqrt(mean(x², -1) + eps)`` in fp32 (no learned scale)."""
    x = x.float()
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)


# --------------------------------------------------------------------------- model passes
def _seq_acts(model, out, layers: Sequence[str], n: int) -> dict[str, torch.Tensor]:
    return {k: out.activations[k][0, :n].float() for k in layers}


def run_full(model, seq: str, layers: Sequence[str]) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    """One full pass (batch 1): activations ``{layer: [L, d]}`` and token log-probs ``[L−1]`` (None for MLMs)."""
    ids, mask = model.tokenize([seq])
    out = model.forward(ids, mask, layers=layers)
    acts = _seq_acts(model, out, layers, len(seq))  # one position per base (protocol)
    lp = None
    if getattr(model, "kind", "causal") == "causal":
        lsm = torch.log_softmax(out.logits[0, :-1].float(), -1)
        lp = lsm.gather(-1, ids[0, 1:, None].to(lsm.device)).squeeze(-1)
    return acts, lp


def run_group(model, ref: str, alts: Sequence[str], layers: Sequence[str], reuse_prefix: bool = True,
              batch_size: int = 8, log_probs: bool = True):
    """Passes for one reference sequence and its variant sequences.

    Returns ``(ref_acts, ref_lp, [(alt_acts, alt_lp), ...])`` exactly as full
    passes would, computing each variant only from its first differing token
    when the model supports prefix reuse. ``log_probs=False`` (the poolings need
    no loss): the log-probs are None and, on models that can stop early
    (``supports_early_exit``), only the blocks up to the deepest of ``layers`` run
    (the same activations, bit for bit).
    """
    if not (reuse_prefix and getattr(model, "supports_prefix_reuse", False)):
        ref_out = run_full(model, ref, layers)
        return ref_out[0], ref_out[1], [run_full(model, a, layers) for a in alts]
    early = {"logits": False} if not log_probs and getattr(model, "supports_early_exit", False) else {}
    ref_ids, _ = model.tokenize([ref])
    prefix = model.prefill(ref_ids, layers=layers, **early)
    ref_acts = {k: prefix.output.activations[k][0].float() for k in layers}
    ref_lp = None
    if log_probs:
        lsm = torch.log_softmax(prefix.output.logits[0, :-1].float(), -1)
        ref_lp = lsm.gather(-1, ref_ids[0, 1:, None].to(lsm.device)).squeeze(-1)
    alt_ids = [model.tokenize([a])[0][0] for a in alts]
    starts = [min(_lcp(ref_ids[0], a), len(a) - 1, ref_ids.shape[1] - 1) for a in alt_ids]
    out: list = [None] * len(alts)
    order = sorted(range(len(alts)), key=lambda i: starts[i])
    pad = getattr(getattr(model, "tokenizer", None), "pad_id", 1)
    for s in range(0, len(order), batch_size):
        idx = order[s:s + batch_size]
        start = min(starts[i] for i in idx)
        if start < 1:
            for i in idx:
                out[i] = run_full(model, alts[i], layers)
            continue
        width = max(len(alt_ids[i]) for i in idx)
        ids = torch.full((len(idx), width), pad, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.bool)
        for j, i in enumerate(idx):
            ids[j, : len(alt_ids[i])] = alt_ids[i]
            mask[j, : len(alt_ids[i])] = True
        suf = model.forward_suffix(prefix, ids, start, layers=layers, attention_mask=mask, **early)
        lp_suf = model.suffix_log_probs(prefix, suf, ids, start).float() if log_probs else None
        for j, i in enumerate(idx):
            n = len(alt_ids[i])
            acts = {k: torch.cat([ref_acts[k][:start], suf.activations[k][j, : n - start].float()]) for k in layers}
            out[i] = (acts, torch.cat([ref_lp[: start - 1], lp_suf[j, : n - start].to(ref_lp.device)])
                      if log_probs else None)
    return ref_acts, ref_lp, out


def run_batched(model, seqs: Sequence[str], layers: Sequence[str], batch_size: int = 16
                ) -> list[dict[str, torch.Tensor]]:
    """Activations ``{layer: [L_i, d]}`` of each of ``seqs`` from full passes, ``batch_size``
    sequences of similar length per call (right-padded; causal models ignore the padding). On
    models that can stop early only the blocks up to the deepest of ``layers`` run."""
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    out: list[dict[str, torch.Tensor] | None] = [None] * len(seqs)
    early = getattr(model, "supports_early_exit", False)
    for s in range(0, len(order), batch_size):
        idx = order[s:s + batch_size]
        ids, mask = model.tokenize([seqs[i] for i in idx])
        if early:
            acts = model.activations(ids, mask, layers)
        else:
            acts = model.forward(ids, mask, layers=layers).activations
        for j, i in enumerate(idx):
            out[i] = {k: acts[k][j, : len(seqs[i])].float() for k in layers}
    return out  # type: ignore[return-value]


# --------------------------------------------------------------------------- EVEE selection
def divergence(v: torch.Tensor, r: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``1 − cos(v, r)`` per row, computed as ``½‖v/|v| − r/|r|‖²`` in fp32.

    Same ranking as cosine similarity, but resolved far more finely: for nearly
    parallel rows ``cos`` sits within a few fp32 steps of 1 and its rounding
    (~1e-7) can reorder positions whose divergences differ by less, while the
    difference form keeps ~1e-6 relative precision (so a full pass and a
    prefix-reuse pass, ~1e-5 apart, select the same positions)."""
    v, r = v.float(), r.float()
    vn = v / v.norm(dim=-1, keepdim=True).clamp_min(eps)
    rn = r / r.norm(dim=-1, keepdim=True).clamp_min(eps)
    return 0.5 * (vn - rn).pow(2).sum(-1)


def evee_direction(ref_acts: torch.Tensor, var_acts: torch.Tensor, ref_lp: torch.Tensor | None,
                   var_lp: torch.Tensor | None, a_ref: int, a_var: int, K: int, fixed: int
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Select K positions after the anchors for one direction.

    Returns ``(idx [K] offsets i (−1 pad), views [3, K, d] fp32, mean [3, d], loss_diff [K])``.
    """
    d = ref_acts.shape[-1]
    n = max(0, min(ref_acts.shape[0] - a_ref, var_acts.shape[0] - a_var))
    n_fixed = min(fixed, n, K)
    cand = torch.arange(n_fixed, n, device=ref_acts.device)
    take = min(K - n_fixed, len(cand))
    if take > 0:
        div = divergence(var_acts[a_var + cand], ref_acts[a_ref + cand])
        order = torch.argsort(-div, stable=True)[:take]  # lowest cosine similarity first; ties: nearest
        chosen = torch.sort(cand[order]).values
    else:
        chosen = cand[:0]
    sel = torch.cat([torch.arange(n_fixed, device=ref_acts.device), chosen])
    k = len(sel)
    views = torch.zeros(3, K, d, dtype=torch.float32, device=ref_acts.device)
    same_idx = (a_var + sel).clamp(max=ref_acts.shape[0] - 1)
    views[0, :k] = var_acts[a_var + sel].float()
    views[1, :k] = ref_acts[same_idx].float()
    views[2, :k] = ref_acts[a_ref + sel].float()
    mean = rms_norm(views[:, :k]).mean(1) if k else torch.zeros(3, d, device=ref_acts.device)
    loss = torch.zeros(K, dtype=torch.float32, device=ref_acts.device)
    if ref_lp is not None and var_lp is not None and k:
        # token t has log-prob lp[t-1]; anchors are >= 1
        loss[:k] = -var_lp[a_var + sel - 1].float() + ref_lp[a_ref + sel - 1].float()
    idx = torch.full((K,), -1, dtype=torch.long)
    idx[:k] = sel.cpu()
    return idx, views, mean, loss


def evee_views(p: PreparedVariant, fwd: tuple, rev: tuple, layer: str, K: int, fixed: int,
               fixed_rev: int = 0) -> dict[str, torch.Tensor]:
    """Assemble the EVEE tensors of one variant from its fwd and rev passes.

    ``fwd``/``rev`` = ``(ref_acts, ref_lp, var_acts, var_lp)`` with acts dicts by layer.
    """
    Lr, Lv = len(p.ref_seq), len(p.alt_seq)
    g0 = p.start - 1  # 0-based genome position of ref_seq[0]
    parts = []
    for direction, (ra, rl, va, vl) in enumerate((fwd, rev)):
        if direction == 0:
            a_ref, a_var, f = p.offset + p.ref_len, p.offset + p.alt_len, fixed
        else:
            a_ref, a_var, f = Lr - p.offset, Lv - p.offset, fixed_rev
        idx, views, mean, loss = evee_direction(ra[layer], va[layer], rl, vl, a_ref, a_var, K, f)
        ref_index = a_ref + idx
        pos = (g0 + ref_index) if direction == 0 else (g0 + Lr - 1 - ref_index)
        pos = torch.where(idx >= 0, pos, torch.full_like(pos, -1))
        parts.append((pos, views.cpu(), mean.cpu(), loss.cpu()))
    return {
        "positions": torch.stack([x[0] for x in parts]),
        "acts": torch.stack([x[1] for x in parts]),
        "mean": torch.stack([x[2] for x in parts]),
        "loss_diff": torch.stack([x[3] for x in parts]),
    }


# --------------------------------------------------------------------------- EVEE recipe
def token_losses(lp: torch.Tensor | None, reverse: bool) -> torch.Tensor | None:
    """Per-token cross-entropy in sense order: ``−lp`` (``[L−1]``, entry ``j`` = token ``j+1``),
    flipped for a reverse-complement pass (entry ``j`` = sense base ``j``)."""
    if lp is None:
        return None
    loss = -lp.float()
    return loss.flip(0) if reverse else loss


def evee_select(var_same: torch.Tensor, ref_same: torch.Tensor, ref_cross: torch.Tensor, K: int,
                start: int, end: int, fixed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """EVEE's position choice in ``[start, end)`` for one direction.

    The first ``min(fixed, n, K)`` indices are kept; the rest of the K come from
    the remaining range, lowest cosine similarity ``var_same`` vs ``ref_same``
    first; all sorted ascending. Returns ``(idx [K] int64 (−1 pad), views [3, K, d]
    fp32 = var_same, ref_same, ref_cross at idx, zeros at padding)``.
    """
    d = var_same.shape[-1]
    idx = torch.full((K,), -1, dtype=torch.long)
    views = torch.zeros(3, K, d, dtype=torch.float32)
    n = max(0, end - start)
    if n == 0:
        return idx, views
    n_fixed = min(fixed, n, K)
    chosen = torch.arange(start, start + n_fixed)
    lo = start + n_fixed
    take = min(K - n_fixed, max(0, end - lo))
    if take > 0:
        sim = F.cosine_similarity(var_same[lo:end].float(), ref_same[lo:end].float(), dim=-1)
        low = sim.topk(take, largest=False).indices.cpu() + lo
        chosen = torch.cat([chosen, low])
    chosen = chosen.sort().values
    k = len(chosen)
    idx[:k] = chosen
    dev = var_same.device
    at = chosen.to(dev)
    views[0, :k] = var_same[at].float().cpu()
    views[1, :k] = ref_same[at].float().cpu()
    views[2, :k] = ref_cross[at].float().cpu()
    return idx, views


def _loss_at(var_loss: torch.Tensor | None, ref_loss: torch.Tensor | None, idx: torch.Tensor) -> torch.Tensor:
    """``var_loss[j] − ref_loss[j]`` at the selected indices; 0 at padding or past either array."""
    out = torch.zeros(idx.shape[0], dtype=torch.float32)
    if var_loss is None or ref_loss is None:
        return out
    ok = (idx >= 0) & (idx < len(var_loss)) & (idx < len(ref_loss))
    if ok.any():
        j = idx[ok]
        out[ok] = (var_loss.cpu()[j] - ref_loss.cpu()[j]).float()
    return out


def evee_recipe_views(p: PreparedVariant, ref_fwd: tuple, var_fwd: tuple, ref_bwd: tuple, var_bwd: tuple,
                      K: int, fixed: int) -> dict[str, torch.Tensor]:
    """EVEE tensors of one variant (``recipe="evee"``, module doc).

    Each pass is ``(acts [L, d], loss [L−1] or None)`` in *sense order* (reverse
    passes already flipped, see :func:`token_losses`); ``p`` holds the spliced
    windows. Returns ``positions [2, K]``, ``acts [2, 3, K, d]`` fp32,
    ``mean [2, 3, d]`` fp32 and ``loss_diff [2, K]`` fp32.
    """
    rf, rb, vf, vb = ref_fwd[0], ref_bwd[0], var_fwd[0], var_bwd[0]
    shared = min(rf.shape[0], vf.shape[0])
    start = p.offset + max(p.ref_len, p.alt_len)
    idx_f, acts_f = evee_select(vf, rf, rb, K, start, shared, fixed)
    idx_b, acts_b = evee_select(vb, rb, rf, K, 0, p.offset, 0)
    d = rf.shape[-1]

    def mean_of(x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x[:shared].float(), (d,)).mean(0).cpu()

    mean = torch.stack([torch.stack([mean_of(vf), mean_of(rf), mean_of(rb)]),
                        torch.stack([mean_of(vb), mean_of(rb), mean_of(rf)])])
    g0 = p.start - 1  # 0-based genome position of window index 0
    pos = torch.stack([idx_f, idx_b])
    pos = torch.where(pos >= 0, pos + g0, pos)
    loss = torch.stack([_loss_at(var_fwd[1], ref_fwd[1], idx_f), _loss_at(var_bwd[1], ref_bwd[1], idx_b)])
    return {"positions": pos, "acts": torch.stack([acts_f, acts_b]), "mean": mean, "loss_diff": loss}


def pool(acts: torch.Tensor, how: str, offset: int, allele_len: int, pool_window: int) -> torch.Tensor:
    """Pool ``[L, d]`` activations: ``variant`` (last allele base), ``window_mean``, ``mean``."""
    if how == "variant":
        return acts[min(offset + max(allele_len, 1) - 1, acts.shape[0] - 1)].float()
    if how == "window_mean":
        lo, hi = max(0, offset - pool_window), min(acts.shape[0], offset + allele_len + pool_window)
        return acts[lo:hi].float().mean(0)
    if how == "mean":
        return acts.float().mean(0)
    raise ValueError(f"unknown pooling {how!r}; use variant, window_mean or mean")


# --------------------------------------------------------------------------- driver
def _runs(preps: list[PreparedVariant]) -> list[list[PreparedVariant]]:
    """Consecutive rows sharing a reference window form one run (non-ok rows stand alone)."""
    runs: list[list[PreparedVariant]] = []
    for p in preps:
        if (runs and p.status == "ok" and runs[-1][0].status == "ok"
                and runs[-1][0].start == p.start and runs[-1][0].ref_seq == p.ref_seq):
            runs[-1].append(p)
        else:
            runs.append([p])
    return runs


def harvest_manifest(model, layers: Sequence[str], view: str, upstream: int, downstream: int,
                     K: int, fixed: int, fixed_rev: int, pool_window: int, storage_dtype: torch.dtype,
                     recipe: str = DEFAULT_RECIPE) -> dict:
    from biointerp import __version__

    evee = view.startswith("evee")
    return {
        "recipe": recipe if evee else None,
        "variant_window": "splice" if evee and recipe == "evee" else "same_length",
        "model": getattr(model, "name", "model"),
        "model_kind": getattr(model, "kind", "causal"),
        "d": int(model.d_model),
        "layer": list(layers)[0] if len(layers) == 1 else None,
        "layers": list(layers),
        "view": view,
        "views": RECIPE_VIEWS[recipe] if view == "evee" else (
            [RECIPE_DIFF[recipe]] if view == "evee_diff" else [view]),
        "directions": ["fwd", "rev"] if evee else ["fwd"],
        "position_order": ("ascending" if recipe == "evee" else "fwd ascending, rev descending") if evee else None,
        "mean_dtype": ("float32" if recipe == "evee" else str(storage_dtype).replace("torch.", "")) if evee else None,
        "K": K if view.startswith("evee") else None,
        "fixed": fixed if view.startswith("evee") else None,
        "fixed_rev": fixed_rev if view.startswith("evee") else None,
        "pool_window": pool_window if view == "window_mean" else None,
        "window": {"upstream": upstream, "downstream": downstream},
        "dtype": str(storage_dtype).replace("torch.", ""),
        "code_version": __version__,
    }


def harvest(model, genome: Genome, variants: pd.DataFrame, layers: Sequence[str] | str,
            view: str = "evee", recipe: str = DEFAULT_RECIPE, store: str | Path | ActivationStore = "activations",
            upstream: int | None = None, downstream: int | None = None, K: int = 256, fixed: int = 64,
            fixed_rev: int = 0, pool_window: int = 64, shard_size: int = 64, batch_size: int = 8,
            reuse_prefix: bool | None = None, storage_dtype: torch.dtype = torch.float16,
            progress: bool = True, chunk_rows: int = 256) -> ActivationStore:
    """Harvest activations of ``variants`` into an activation store (resumable).

    Parameters
    ----------
    model, genome, variants
        A ``GenomicModel``, the reference and a variant table (``chrom, pos,
        ref, alt`` + optional ``variant_id, status``); every row ends up in the
        store's index with its status.
    layers
        Layer name(s) (the model's module names, e.g. ``blocks.27``); the EVEE
        views take exactly one.
    view
        ``evee``, ``evee_diff``, ``variant``, ``window_mean`` or ``mean``.
    recipe
        EVEE views only: ``evee`` (EVEE's public harvest, exactly) or ``genomic``
        (ours: genomic pairing); see the module doc. Recorded in the manifest.
    store
        Store directory; an existing store with the same settings is resumed
        (variants already in it are skipped).
    upstream, downstream
        Window around the variant (default 49,152 + 16,384 for EVEE views,
        4,096 + 4,096 otherwise).
    K, fixed, fixed_rev
        Positions kept per direction and the fixed window right after the
        variant (fwd) / upstream of it (rev; genomic recipe only, EVEE has none).
    shard_size
        Input rows per shard (ok and non-ok; every shard but the last holds exactly this many).
    chunk_rows
        Input rows whose windows are prepared (held in memory) at once.

    Returns
    -------
    The :class:`ActivationStore`.
    """
    layers = [layers] if isinstance(layers, str) else list(layers)
    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r}; choose one of {', '.join(VIEWS)}")
    if not layers:
        raise ValueError("give at least one layer")
    known = set(model.layer_names)
    bad = [x for x in layers if x not in known]
    if bad:
        raise ValueError(f"unknown layer(s) {bad} for {model.name}; layers look like {model.layer_names[:6]}")
    evee = view.startswith("evee")
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; choose one of {', '.join(RECIPES)}")
    if evee and recipe == "evee" and fixed_rev:
        raise ValueError("the evee recipe has no fixed window upstream (fixed_rev must be 0); "
                         "use recipe='genomic' for one")
    if evee and len(layers) != 1:
        raise ValueError("the EVEE views take exactly one layer (run one harvest per layer)")
    if evee and getattr(model, "kind", "causal") != "causal":
        raise ValueError("the EVEE views need a causal model (per-position loss)")
    if upstream is None:
        upstream = EVEE_DEFAULTS["upstream"] if evee else 4096
    if downstream is None:
        downstream = EVEE_DEFAULTS["downstream"] if evee else 4096
    if K < 1 or fixed < 0 or fixed > K:
        raise ValueError("need K >= 1 and 0 <= fixed <= K")
    manifest = harvest_manifest(model, layers, view, upstream, downstream, K, fixed, fixed_rev,
                                pool_window, storage_dtype, recipe)
    exact_evee = evee and recipe == "evee"
    if reuse_prefix is None:
        reuse_prefix = not exact_evee
    mean_dtype = torch.float32 if exact_evee else storage_dtype
    batched_pooling = not evee and not reuse_prefix
    st = store if isinstance(store, ActivationStore) else ActivationStore.open_or_create(store, manifest)
    # the store is keyed by variant id: a repeated id (status "duplicate" in
    # read_variants' table) is stored once, under its first occurrence
    if "variant_id" in variants.columns:
        all_ids = variants["variant_id"].astype(str)
    else:
        all_ids = (variants["chrom"].astype(str) + ":" + variants["pos"].astype(str) + ":"
                   + variants["ref"].astype(str) + ":" + variants["alt"].astype(str))
    first = (~all_ids.duplicated()).to_numpy()
    todo_mask = first & ~all_ids.isin(st.done).to_numpy()
    # consecutive rows at one position run through the model together (one batch per run); when only
    # some of them are to do (a resume, a repair) the others are computed again, not stored, so that
    # every variant's numbers equal the first run's exactly wherever the shard boundaries fell
    site = (variants["chrom"].astype(str) + ":" + variants["pos"].astype(str)).to_numpy()
    group = np.cumsum(np.r_[True, site[1:] != site[:-1]]) if len(site) else np.zeros(0, dtype=int)
    need_mask = first & np.isin(group, group[todo_mask])

    def blocks():
        # fixed blocks of *input* rows: a resumed run splits its work exactly where the
        # first run did, so shards come out identical; only one block's windows in memory.
        # Yields (prepared variants of one contiguous stretch of needed rows, which to store).
        for lo in range(0, len(variants), chunk_rows):
            rows = np.flatnonzero(need_mask[lo:lo + chunk_rows])
            for seg in np.split(rows, np.flatnonzero(np.diff(rows) > 1) + 1) if len(rows) else []:
                preps = prepare_variants(genome, variants.iloc[lo + seg], upstream, downstream,
                                         variant_window="splice" if exact_evee else "same_length")
                yield preps, {id(p) for p, k in zip(preps, todo_mask[lo + seg]) if k}

    layer = layers[0]
    bar = tqdm(total=int(todo_mask.sum()), desc=f"harvest {view}" + (f" ({recipe})" if evee else ""), unit="var",
               disable=not progress)
    buf_ids: list[str] = []
    buf_status: list[str] = []
    buf_detail: list[str] = []
    buf_t: dict[str, list[torch.Tensor]] = {}
    names = _tensor_names(view, layers)

    def empty_row() -> dict[str, torch.Tensor]:
        d = int(model.d_model)
        if view == "evee":
            return {"acts": torch.zeros(2, 3, K, d, dtype=storage_dtype), "positions": torch.full((2, K), -1),
                    "mean": torch.zeros(2, 3, d, dtype=mean_dtype), "loss_diff": torch.zeros(2, K)}
        if view == "evee_diff":
            return {"diff": torch.zeros(2, K, d, dtype=storage_dtype), "positions": torch.full((2, K), -1),
                    "mean": torch.zeros(2, 3, d, dtype=mean_dtype), "loss_diff": torch.zeros(2, K)}
        return {n: torch.zeros(d, dtype=storage_dtype) for n in names}

    def add(p: PreparedVariant, row: dict[str, torch.Tensor] | None) -> None:
        row = row if row is not None else empty_row()
        buf_ids.append(p.variant_id)
        buf_status.append(p.status)
        buf_detail.append(p.status_detail)
        for k, v in row.items():
            buf_t.setdefault(k, []).append(v)
        if len(buf_ids) >= shard_size:  # shards of exactly shard_size rows (the last one: the rest)
            flush()

    with st.background_writer() as writer:
        def flush() -> None:
            if buf_ids:
                writer.submit(list(buf_ids), {k: torch.stack(v) for k, v in buf_t.items()},
                              list(buf_status), list(buf_detail))
                buf_ids.clear(), buf_status.clear(), buf_detail.clear(), buf_t.clear()

        def runs_with_passes():
            """(run, keep, fwd passes or None): poolings without prefix reuse run consecutive runs'
            windows together, ``batch_size`` sequences at a time (only those activations in
            memory); otherwise each run is computed below."""
            for preps, keep in blocks():
                pending: list[list[PreparedVariant]] = []
                for r in _runs(preps):
                    if not batched_pooling:
                        yield r, keep, None
                        continue
                    pending.append(r)
                    if sum(len(x) + 1 for x in pending if x[0].status == "ok") >= batch_size:
                        yield from batched(pending, keep)
                        pending = []
                yield from batched(pending, keep)

        def batched(runs, keep):
            ok = [r for r in runs if r[0].status == "ok"]
            acts = iter(run_batched(model, [s for r in ok for s in [r[0].ref_seq] + [p.alt_seq for p in r]],
                                    layers, batch_size))
            passes = {id(r[0]): (next(acts), None, [(next(acts), None) for _ in r]) for r in ok}
            for r in runs:
                yield r, keep, passes.get(id(r[0]))

        for run, keep, fwd in runs_with_passes():
            if run[0].status != "ok":
                if id(run[0]) in keep:
                    add(run[0], None)
            else:
                ref = run[0].ref_seq
                if fwd is None:
                    fwd = run_group(model, ref, [p.alt_seq for p in run], layers, reuse_prefix, batch_size,
                                    log_probs=evee)  # the poolings need no loss: passes stop at the layer
                rev = None
                if evee:
                    rev = run_group(model, reverse_complement(ref),
                                    [reverse_complement(p.alt_seq) for p in run], layers, reuse_prefix, batch_size)
                for j, p in enumerate(run):
                    if id(p) not in keep:  # computed for its run-mates' sake, stored already
                        continue
                    if exact_evee:
                        t = evee_recipe_views(
                            p, (fwd[0][layer], token_losses(fwd[1], False)),
                            (fwd[2][j][0][layer], token_losses(fwd[2][j][1], False)),
                            (rev[0][layer].flip(0), token_losses(rev[1], True)),
                            (rev[2][j][0][layer].flip(0), token_losses(rev[2][j][1], True)), K, fixed)
                    elif evee:
                        f = (fwd[0], fwd[1], fwd[2][j][0], fwd[2][j][1])
                        r = (rev[0], rev[1], rev[2][j][0], rev[2][j][1])
                        t = evee_views(p, f, r, layer, K, fixed, fixed_rev)
                    if evee:
                        row = {"positions": t["positions"], "mean": t["mean"].to(mean_dtype),
                               "loss_diff": t["loss_diff"]}
                        if view == "evee":
                            row["acts"] = t["acts"].to(storage_dtype)
                        else:  # the recipe's diff: evee var_same - ref_same, genomic var_same - ref_aligned
                            ref_view = 1 if exact_evee else 2
                            row["diff"] = (t["acts"][:, 0] - t["acts"][:, ref_view]).to(storage_dtype)
                    else:
                        row = {}
                        for lay in layers:
                            row[f"emb.{lay}.{view}"] = pool(fwd[2][j][0][lay], view, p.offset, p.alt_len,
                                                            pool_window).cpu().to(storage_dtype)
                            row[f"emb.{lay}.{view}.ref"] = pool(fwd[0][lay], view, p.offset, p.ref_len,
                                                                pool_window).cpu().to(storage_dtype)
                    add(p, row)
            bar.update(sum(id(p) in keep for p in run))
        flush()
    bar.close()
    return st


def _tensor_names(view: str, layers: Sequence[str]) -> list[str]:
    if view == "evee":
        return ["acts", "positions", "mean", "loss_diff"]
    if view == "evee_diff":
        return ["diff", "positions", "mean", "loss_diff"]
    return [n for lay in layers for n in (f"emb.{lay}.{view}", f"emb.{lay}.{view}.ref")]


def genomic_reference(model, genome: Genome, variants: pd.DataFrame, layer: str,
                      upstream: int = 49152, downstream: int = 16384, K: int = 256, fixed: int = 64,
                      fixed_rev: int = 0) -> tuple[list[str], dict[str, torch.Tensor]]:
    """The ``genomic`` recipe with batch size 1 and four full passes per variant (reference
    and variant, each forward and as reverse complement), nothing shared: the baseline its
    speed-ups are checked against. Returns ``(variant_ids, {acts, positions, mean,
    loss_diff})`` for the ``ok`` rows, in fp32. (EVEE's own recipe, re-implemented
    independently: :mod:`biointerp.evee_plain`.)
    """
    preps = prepare_variants(genome, variants, upstream, downstream, variant_window="same_length")
    ids: list[str] = []
    rows: list[dict[str, torch.Tensor]] = []
    for p in preps:
        if p.status != "ok":
            continue
        ra, rl = run_full(model, p.ref_seq, [layer])
        va, vl = run_full(model, p.alt_seq, [layer])
        rra, rrl = run_full(model, reverse_complement(p.ref_seq), [layer])
        rva, rvl = run_full(model, reverse_complement(p.alt_seq), [layer])
        rows.append(evee_views(p, (ra, rl, va, vl), (rra, rrl, rva, rvl), layer, K, fixed, fixed_rev))
        ids.append(p.variant_id)
    if not rows:
        return ids, {}
    return ids, {k: torch.stack([r[k] for r in rows]) for k in rows[0]}


def evee_bytes_per_variant(d: int, K: int, view: str = "evee", dtype_bytes: int = 2,
                           recipe: str = DEFAULT_RECIPE) -> int:
    """Bytes per variant of the stored EVEE tensors (acts or diff + positions + mean + loss_diff);
    the evee recipe keeps ``mean`` in fp32, as EVEE does."""
    big = 2 * 3 * K * d if view == "evee" else 2 * K * d
    mean_bytes = 4 if recipe == "evee" else dtype_bytes
    return big * dtype_bytes + 2 * K * 8 + 2 * 3 * d * mean_bytes + 2 * K * 4
