"""Activation harvest: EVEE-compatible variant views and simple poolings into an ActivationStore.

EVEE view (``view="evee"``), per variant and for one layer:

* windows: reference ``[pos − upstream, pos + downstream)`` and the variant
  window of the same length (``alt`` spliced at ``offset``, cut or extended
  downstream from the genome); direction ``fwd`` runs them as they are,
  ``rev`` runs their reverse complements.
* anchors: the first base after the allele, ``offset + len(ref)`` in the
  reference and ``offset + len(alt)`` in the variant sequence (in the
  reverse-complement sequences, the first base after the allele there, i.e.
  the base just upstream of the variant on the genome).
* candidates: the positions after the anchor, paired by genomic position:
  variant index ``a_var + i`` with reference index ``a_ref + i``.
  ``fwd`` keeps a fixed window ``i < fixed`` (64) plus the ``K − fixed``
  candidates with the lowest cosine similarity between the variant and the
  reference activation (``ref_cross`` pairing; ranked by ``1 − cos`` computed
  in difference form, see :func:`divergence`); ``rev`` keeps the ``K −
  fixed_rev`` (default all K) most divergent upstream positions. Selected
  positions are sorted by ``i``; missing ones are padding (position −1, zeros).
* views, my reading of EVEE's names: ``var_same`` = variant-sequence
  activations at the selected variant indices; ``ref_same`` = reference
  activations at the *same sequence indices*; ``ref_cross`` = reference
  activations at the *corresponding genomic positions* (index ``a_ref + i``).
  For SNVs (and for everything upstream of the variant) ``ref_same ==
  ref_cross``; they differ downstream of indels, where sequence index and
  genomic position part ways by ``len(alt) − len(ref)``.
* ``positions [2, K]``: 0-based genomic positions of the selected bases
  (−1 = padding); ``mean [2, 3, d]``: mean over the selected positions of
  ``rms_norm(x) = x / sqrt(mean(x²) + 1e-6)`` per view;
  ``loss_diff [2, K]``: ``−log p`` of the same genomic base in the variant
  minus in the reference sequence (cross pairing).

Store tensors: ``acts [N,2,3,K,d]`` (fp16), ``positions [N,2,K]`` int64,
``mean [N,2,3,d]`` (fp16), ``loss_diff [N,2,K]`` fp32. ``view="evee_diff"``
stores ``diff [N,2,K,d]`` = var_same − ref_cross instead of ``acts`` (a third
of the size; what the covariance probe consumes).

Poolings (``view="variant" | "window_mean" | "mean"``, any number of layers
in one pass): the variant-sequence activation at the last allele base, the
mean over ``[offset − pool_window, offset + len(alt) + pool_window)``, or the
mean over the whole window; stored as ``emb.<layer>.<pooling> [N, d]`` and the
reference sequence's as ``emb.<layer>.<pooling>.ref``.

Speed: variants sharing a reference window share its passes; with prefix
reuse the reference is prefilled once and the variant sequences are only
computed from their first differing token (for ``fwd`` that skips the whole
upstream part, for ``rev`` the downstream part). Shards are written on a
background thread while the model runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from biointerp.genome import Genome, reverse_complement
from biointerp.scoring import PreparedVariant, _lcp, prepare_variants
from biointerp.store import ActivationStore

VIEWS = ("evee", "evee_diff", "variant", "window_mean", "mean")
EVEE_DEFAULTS = {"upstream": 49152, "downstream": 16384, "K": 256, "fixed": 64}


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
              batch_size: int = 8):
    """Passes for one reference sequence and its variant sequences.

    Returns ``(ref_acts, ref_lp, [(alt_acts, alt_lp), ...])`` exactly as full
    passes would, computing each variant only from its first differing token
    when the model supports prefix reuse.
    """
    if not (reuse_prefix and getattr(model, "supports_prefix_reuse", False)):
        ref_out = run_full(model, ref, layers)
        return ref_out[0], ref_out[1], [run_full(model, a, layers) for a in alts]
    ref_ids, _ = model.tokenize([ref])
    prefix = model.prefill(ref_ids, layers=layers)
    ref_acts = {k: prefix.output.activations[k][0].float() for k in layers}
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
        suf = model.forward_suffix(prefix, ids, start, layers=layers, attention_mask=mask)
        lp_suf = model.suffix_log_probs(prefix, suf, ids, start).float()
        for j, i in enumerate(idx):
            n = len(alt_ids[i])
            acts = {k: torch.cat([ref_acts[k][:start], suf.activations[k][j, : n - start].float()]) for k in layers}
            out[i] = (acts, torch.cat([ref_lp[: start - 1], lp_suf[j, : n - start].to(ref_lp.device)]))
    return ref_acts, ref_lp, out


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
                     K: int, fixed: int, fixed_rev: int, pool_window: int, storage_dtype: torch.dtype) -> dict:
    from biointerp import __version__

    return {
        "model": getattr(model, "name", "model"),
        "model_kind": getattr(model, "kind", "causal"),
        "d": int(model.d_model),
        "layer": list(layers)[0] if len(layers) == 1 else None,
        "layers": list(layers),
        "view": view,
        "views": ["var_same", "ref_same", "ref_cross"] if view == "evee" else (
            ["var_minus_ref_cross"] if view == "evee_diff" else [view]),
        "directions": ["fwd", "rev"] if view.startswith("evee") else ["fwd"],
        "K": K if view.startswith("evee") else None,
        "fixed": fixed if view.startswith("evee") else None,
        "fixed_rev": fixed_rev if view.startswith("evee") else None,
        "pool_window": pool_window if view == "window_mean" else None,
        "window": {"upstream": upstream, "downstream": downstream},
        "dtype": str(storage_dtype).replace("torch.", ""),
        "code_version": __version__,
    }


def harvest(model, genome: Genome, variants: pd.DataFrame, layers: Sequence[str] | str,
            view: str = "evee", store: str | Path | ActivationStore = "activations",
            upstream: int | None = None, downstream: int | None = None, K: int = 256, fixed: int = 64,
            fixed_rev: int = 0, pool_window: int = 64, shard_size: int = 64, batch_size: int = 8,
            reuse_prefix: bool = True, storage_dtype: torch.dtype = torch.float16,
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
    store
        Store directory; an existing store with the same settings is resumed
        (variants already in it are skipped).
    upstream, downstream
        Window around the variant (default 49,152 + 16,384 for EVEE views,
        4,096 + 4,096 otherwise).
    K, fixed, fixed_rev
        Positions kept per direction and the fixed window right after the
        variant (fwd) / upstream of it (rev).
    shard_size
        Input rows per shard, at most (ok and non-ok; shards close before a run of variants sharing
        a reference window that would overflow them, so a shard holds whole runs).
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
                                pool_window, storage_dtype)
    st = store if isinstance(store, ActivationStore) else ActivationStore.open_or_create(store, manifest)
    # the store is keyed by variant id: a repeated id (status "duplicate" in
    # read_variants' table) is stored once, under its first occurrence
    if "variant_id" in variants.columns:
        all_ids = variants["variant_id"].astype(str)
    else:
        all_ids = (variants["chrom"].astype(str) + ":" + variants["pos"].astype(str) + ":"
                   + variants["ref"].astype(str) + ":" + variants["alt"].astype(str))
    todo_mask = (~all_ids.duplicated() & ~all_ids.isin(st.done)).to_numpy()

    def blocks():
        # fixed blocks of *input* rows: a resumed run splits its work exactly where the
        # first run did, so shards come out identical; only one block's windows in memory
        for lo in range(0, len(variants), chunk_rows):
            block = variants.iloc[lo:lo + chunk_rows][todo_mask[lo:lo + chunk_rows]]
            if len(block):
                yield prepare_variants(genome, block, upstream, downstream, same_length=True)

    layer = layers[0]
    bar = tqdm(total=int(todo_mask.sum()), desc=f"harvest {view}", unit="var", disable=not progress)
    buf_ids: list[str] = []
    buf_status: list[str] = []
    buf_detail: list[str] = []
    buf_t: dict[str, list[torch.Tensor]] = {}
    names = _tensor_names(view, layers)

    def empty_row() -> dict[str, torch.Tensor]:
        d = int(model.d_model)
        if view == "evee":
            return {"acts": torch.zeros(2, 3, K, d, dtype=storage_dtype), "positions": torch.full((2, K), -1),
                    "mean": torch.zeros(2, 3, d, dtype=storage_dtype), "loss_diff": torch.zeros(2, K)}
        if view == "evee_diff":
            return {"diff": torch.zeros(2, K, d, dtype=storage_dtype), "positions": torch.full((2, K), -1),
                    "mean": torch.zeros(2, 3, d, dtype=storage_dtype), "loss_diff": torch.zeros(2, K)}
        return {n: torch.zeros(d, dtype=storage_dtype) for n in names}

    def add(p: PreparedVariant, row: dict[str, torch.Tensor] | None) -> None:
        row = row if row is not None else empty_row()
        buf_ids.append(p.variant_id)
        buf_status.append(p.status)
        buf_detail.append(p.status_detail)
        for k, v in row.items():
            buf_t.setdefault(k, []).append(v)
        if len(buf_ids) >= shard_size:  # never more than shard_size rows (splits a run longer than that)
            flush()

    with st.background_writer() as writer:
        def flush() -> None:
            if buf_ids:
                writer.submit(list(buf_ids), {k: torch.stack(v) for k, v in buf_t.items()},
                              list(buf_status), list(buf_detail))
                buf_ids.clear(), buf_status.clear(), buf_detail.clear(), buf_t.clear()

        for run in (r for preps in blocks() for r in _runs(preps)):
            if buf_ids and len(buf_ids) + len(run) > shard_size:
                # close the shard before a run that would overflow it: a shard holds whole runs, so a
                # resumed or repaired shard is computed with the same batches as the first time
                flush()
            if run[0].status != "ok":
                add(run[0], None)
            else:
                ref = run[0].ref_seq
                fwd = run_group(model, ref, [p.alt_seq for p in run], layers, reuse_prefix, batch_size)
                rev = None
                if evee:
                    rev = run_group(model, reverse_complement(ref),
                                    [reverse_complement(p.alt_seq) for p in run], layers, reuse_prefix, batch_size)
                for j, p in enumerate(run):
                    if evee:
                        f = (fwd[0], fwd[1], fwd[2][j][0], fwd[2][j][1])
                        r = (rev[0], rev[1], rev[2][j][0], rev[2][j][1])
                        t = evee_views(p, f, r, layer, K, fixed, fixed_rev)
                        row = {"positions": t["positions"], "mean": t["mean"].to(storage_dtype),
                               "loss_diff": t["loss_diff"]}
                        if view == "evee":
                            row["acts"] = t["acts"].to(storage_dtype)
                        else:
                            row["diff"] = (t["acts"][:, 0] - t["acts"][:, 2]).to(storage_dtype)
                    else:
                        row = {}
                        for lay in layers:
                            row[f"emb.{lay}.{view}"] = pool(fwd[2][j][0][lay], view, p.offset, p.alt_len,
                                                            pool_window).cpu().to(storage_dtype)
                            row[f"emb.{lay}.{view}.ref"] = pool(fwd[0][lay], view, p.offset, p.ref_len,
                                                                pool_window).cpu().to(storage_dtype)
                    add(p, row)
            bar.update(len(run))
        flush()
    bar.close()
    return st


def _tensor_names(view: str, layers: Sequence[str]) -> list[str]:
    if view == "evee":
        return ["acts", "positions", "mean", "loss_diff"]
    if view == "evee_diff":
        return ["diff", "positions", "mean", "loss_diff"]
    return [n for lay in layers for n in (f"emb.{lay}.{view}", f"emb.{lay}.{view}.ref")]


def evee_reference(model, genome: Genome, variants: pd.DataFrame, layer: str,
                   upstream: int = 49152, downstream: int = 16384, K: int = 256, fixed: int = 64,
                   fixed_rev: int = 0) -> tuple[list[str], dict[str, torch.Tensor]]:
    """EVEE's published harvest recipe re-implemented as the baseline.

    Batch size 1 and four full passes per variant (reference and variant, each
    forward and as reverse complement), no sharing between variants. Returns
    ``(variant_ids, {acts, positions, mean, loss_diff})`` for the ``ok`` rows,
    in fp32.
    """
    preps = prepare_variants(genome, variants, upstream, downstream, same_length=True)
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


def evee_bytes_per_variant(d: int, K: int, view: str = "evee", dtype_bytes: int = 2) -> int:
    """Bytes per variant of the stored EVEE tensors (acts or diff + positions + mean + loss_diff)."""
    big = 2 * 3 * K * d if view == "evee" else 2 * K * d
    return big * dtype_bytes + 2 * K * 8 + 2 * 3 * d * dtype_bytes + 2 * K * 4
