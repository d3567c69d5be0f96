"""Zero-shot variant scores.

Causal models: Δ log-likelihood = LL(variant window) − LL(reference window),
the Evo 2 zero-shot recipe. The reference window covers
``[pos − window/2, pos + window/2)`` (shifted at contig edges; ``window`` must
be even, as the notebook takes window//2 bases either side); the
variant window splices ``alt`` for ``ref`` at the variant's offset (indels
change its length). LL is the mean (``reduce="mean"``) or sum of
``log p(x_t | x_<t)`` over tokens ``t = 1..L−1``, or over the tokens within
``span`` bases of the allele. ``strand="rev"`` scores the reverse complements,
``"both"`` averages the two.

Indels and the reduction. The two windows differ in length by the indel length.
``mean`` divides each sum by its own token count, so for an insertion Δ mostly
measures how predictable the *inserted* bases are (a poly-A insertion raises the
mean), and indel and SNV Δ are not on one scale. ``sum`` adds the inserted
bases' own terms to the downstream change (longer insertions score lower
whatever they do). ``reduce="aligned"`` (length-aware) compares like with
like: ``delta_ll`` is the change in the summed LL of the *shared downstream
flank*, the bases after the allele, aligned base for base (the same genomic
bases in both windows; upstream tokens are identical in a causal model and
cancel), and the alleles' own term, Σ LL(alt bases) − Σ LL(ref bases), is
reported apart as ``delta_ll_allele``. For SNVs ``delta_ll + delta_ll_allele``
equals the ``sum`` Δ.

Masked models: masked marginal, Σ_i log p(alt_i) − log p(ref_i) with the
allele positions masked in the reference window (same-length variants only).

Speed without changing the numbers: every distinct reference window is run
once (variants at the same position share it); with models supporting prefix
reuse the reference is prefilled and every variant sequence is computed only
from its first differing token on (``forward_suffix``), all alleles of a
position in one batch. With a ``span`` the passes stop at the last scored
token (later tokens cannot change earlier log-probs in a causal model).
``reuse_prefix=False`` runs full passes, batched.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from biointerp.genome import Genome, reverse_complement
from biointerp.windows import PreparedVariant, centred_bounds, prepare_variants  # noqa: F401

SCORE_COLUMNS = ["delta_ll", "ref_ll", "alt_ll"]
#: ``mean`` / ``sum`` of the window's token LLs, or ``aligned`` (length-aware; module doc)
REDUCTIONS = ("mean", "sum", "aligned")


def _lcp(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    a_t, b_t = torch.as_tensor(a[:n]), torch.as_tensor(b[:n])
    diff = torch.nonzero(a_t != b_t)
    return int(diff[0]) if len(diff) else n


def _reduce(lp: torch.Tensor, lo: int, hi: int, how: str) -> float:
    """Reduce token log-probs ``lp`` (token t at index t−1) over tokens ``lo..hi-1``."""
    seg = lp[max(lo, 1) - 1: max(hi, 1) - 1].double()
    if seg.numel() == 0:
        return float("nan")
    return float(seg.mean() if how == "mean" else seg.sum())


def _aligned(lp: torch.Tensor, length: int, a0: int, a1: int, span: int | None) -> tuple[float, float]:
    """(summed LL of the flank after the allele, summed LL of the allele's own tokens)."""
    lo, hi = _token_range(length, a0, a1, span)
    flank = _reduce(lp, max(a1, lo), hi, "sum") if hi > max(a1, lo) else 0.0
    own = _reduce(lp, max(a0, lo), min(a1, hi), "sum") if min(a1, hi) > max(a0, lo, 1) else 0.0
    return flank, own


def _token_range(length: int, a0: int, a1: int, span: int | None) -> tuple[int, int]:
    """Scored tokens: all (1..L-1) or those within ``span`` bases of the allele [a0, a1)."""
    if span is None:
        return 1, length
    return max(1, a0 - span), min(length, a1 + span)


def sequence_log_probs(model, seqs: Sequence[str], batch_size: int = 8) -> list[torch.Tensor]:
    """Per-token log-probs (length L−1, fp32, CPU) of each sequence: full passes, batched by length."""
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    out: list[torch.Tensor | None] = [None] * len(seqs)
    for s in range(0, len(order), batch_size):
        idx = order[s:s + batch_size]
        ids, mask = model.tokenize([seqs[i] for i in idx])
        lp = model.log_probs(ids, mask).float().cpu()
        for j, i in enumerate(idx):
            out[i] = lp[j, : len(seqs[i]) - 1]
    return out  # type: ignore[return-value]


def _group_log_probs(model, ref: str, alts: Sequence[str], batch_size: int
                     ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Token log-probs of ``ref`` and each alt with prefix reuse (one prefill, batched suffixes)."""
    ref_ids, _ = model.tokenize([ref])
    prefix = model.prefill(ref_ids)
    ref_lp = _tlp(prefix.output.logits, ref_ids)[0]
    alt_ids = [model.tokenize([a])[0][0] for a in alts]
    starts = [min(_lcp(ref_ids[0], a), len(a) - 1, ref_ids.shape[1] - 1) for a in alt_ids]
    out: list[torch.Tensor | None] = [None] * len(alts)
    order = sorted(range(len(alts)), key=lambda i: starts[i])
    for s in range(0, len(order), batch_size):
        idx = order[s:s + batch_size]
        start = min(starts[i] for i in idx)
        if start < 1:
            for i in idx:
                out[i] = sequence_log_probs(model, [alts[i]])[0]
            continue
        width = max(len(alt_ids[i]) for i in idx)
        ids = torch.full((len(idx), width), model.tokenizer.pad_id, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.bool)
        for j, i in enumerate(idx):
            ids[j, : len(alt_ids[i])] = alt_ids[i]
            mask[j, : len(alt_ids[i])] = True
        suf = model.forward_suffix(prefix, ids, start, attention_mask=mask)
        lp_suf = model.suffix_log_probs(prefix, suf, ids, start).float().cpu()  # tokens start..width-1
        for j, i in enumerate(idx):
            n = len(alt_ids[i])
            out[i] = torch.cat([ref_lp[: start - 1], lp_suf[j, : n - start]])
    return ref_lp, out  # type: ignore[return-value]


def _tlp(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    lsm = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    return lsm.gather(-1, ids[:, 1:, None].to(lsm.device)).squeeze(-1).cpu()


def _strand_scores(model, preps: list[PreparedVariant], rev: bool, reduce: str, span: int | None,
                   batch_size: int, reuse_prefix: bool, progress: bool) -> dict[int, tuple[float, float]]:
    """(ref_ll, alt_ll) per ok row for one strand."""
    groups: dict[tuple, list[PreparedVariant]] = {}
    for p in preps:
        groups.setdefault((p.start, p.ref_seq), []).append(p)
    res: dict[int, tuple[float, float]] = {}
    use_prefix = reuse_prefix and getattr(model, "supports_prefix_reuse", False)
    bar = tqdm(total=len(preps), desc=f"score {'rev' if rev else 'fwd'}", unit="var",
               disable=not progress, leave=False)

    def seqs_of(p: PreparedVariant) -> tuple[str, str]:
        return (reverse_complement(p.ref_seq), reverse_complement(p.alt_seq)) if rev else (p.ref_seq, p.alt_seq)

    def allele(p: PreparedVariant, alt: bool) -> tuple[int, int, int]:
        L = len(p.alt_seq if alt else p.ref_seq)
        n = p.alt_len if alt else p.ref_len
        a0 = L - p.offset - n if rev else p.offset
        return L, a0, a0 + n

    def finish(p: PreparedVariant, ref_lp: torch.Tensor, alt_lp: torch.Tensor) -> None:
        if reduce == "aligned":
            rf, ro = _aligned(ref_lp, *allele(p, False), span)
            af, ao = _aligned(alt_lp, *allele(p, True), span)
            res[p.row] = (rf, af, ro, ao)
            return
        L, a0, a1 = allele(p, False)
        r = _reduce(ref_lp, *_token_range(L, a0, a1, span), reduce)
        L, a0, a1 = allele(p, True)
        a = _reduce(alt_lp, *_token_range(L, a0, a1, span), reduce)
        res[p.row] = (r, a)

    def cut(p: PreparedVariant, alt: bool) -> int | None:
        """Length to run: with a ``span`` the last scored token is the last one needed (causal)."""
        return None if span is None else _token_range(*allele(p, alt), span)[1]

    def ref_of(members: list[PreparedVariant]) -> str:
        ref = seqs_of(members[0])[0]
        return ref if span is None else ref[:max(cut(p, False) for p in members)]

    def alt_of(p: PreparedVariant) -> str:
        return seqs_of(p)[1][:cut(p, True)]

    if use_prefix:
        for members in groups.values():
            ref_lp, alt_lps = _group_log_probs(model, ref_of(members), [alt_of(p) for p in members], batch_size)
            for p, alp in zip(members, alt_lps):
                finish(p, ref_lp, alp)
            bar.update(len(members))
    else:
        keys = list(groups)
        per_batch = max(1, batch_size // 2)
        for s in range(0, len(keys), per_batch):
            chunk = [groups[k] for k in keys[s:s + per_batch]]
            seqs = []
            for members in chunk:
                seqs.append(ref_of(members))
                seqs.extend(alt_of(p) for p in members)
            lps = sequence_log_probs(model, seqs, batch_size)
            j = 0
            for members in chunk:
                ref_lp = lps[j]
                j += 1
                for p in members:
                    finish(p, ref_lp, lps[j])
                    j += 1
                bar.update(len(members))
    bar.close()
    return res


def _masked_scores(model, preps: list[PreparedVariant], batch_size: int, progress: bool
                   ) -> dict[int, tuple[float, float] | str]:
    """Masked marginal per ok row, or a status string when the variant cannot be scored."""
    mask_id = getattr(model, "mask_token_id", None)
    if mask_id is None:
        mask_id = getattr(getattr(model, "hf_tokenizer", None), "mask_token_id", None)
    if mask_id is None:
        raise ValueError(f"{model.name} is a masked LM without a mask_token_id; cannot score")
    res: dict[int, tuple[float, float] | str] = {}
    for p in tqdm(preps, desc="score masked", unit="var", disable=not progress, leave=False):
        if p.ref_len != p.alt_len:
            res[p.row] = "unsupported"
            continue
        ids, mask = model.tokenize([p.ref_seq])  # one token per base (protocol)
        pos = list(range(p.offset, p.offset + p.ref_len))
        masked = ids.clone()
        masked[0, pos] = mask_id
        logits = model.forward(masked, mask).logits[0].float().cpu()
        lsm = torch.log_softmax(logits[pos], dim=-1)
        ref_tok = ids[0, pos]
        alt_tok = model.tokenize([p.alt_seq[p.offset:p.offset + p.alt_len]])[0][0]
        r = float(lsm.gather(-1, ref_tok[:, None]).sum())
        a = float(lsm.gather(-1, alt_tok[:, None]).sum())
        res[p.row] = (r, a)
    return res


def score_variants(model, genome: Genome, variants: pd.DataFrame, window: int = 8192,
                   reduce: str = "mean", strand: str = "fwd", span: int | None = None,
                   batch_size: int = 8, reuse_prefix: bool = True, progress: bool = True,
                   chunk_rows: int = 1024) -> pd.DataFrame:
    """Zero-shot Δ log-likelihood for every row of ``variants``.

    Parameters
    ----------
    model
        A ``GenomicModel`` (causal: Δ LL; masked: masked marginal).
    genome
        The reference (``biointerp.genome.Genome``).
    variants
        Table with ``chrom, pos, ref, alt`` (+ ``variant_id``, ``status``), e.g.
        from ``variants.read_variants``.
    window, reduce, strand, span
        Window length (bp, centred on the variant), ``"mean"``, ``"sum"`` or ``"aligned"``
        (length-aware: Δ of the shared downstream flank, plus ``delta_ll_allele``; module doc),
        ``"fwd"``/``"rev"``/``"both"`` (averaged), and optionally only tokens
        within ``span`` bases of the allele are scored.
    batch_size, reuse_prefix
        Sequences per model call; prefix reuse on models that support it.
    chunk_rows
        Rows whose windows are held in memory at once (variants of one
        position in different chunks just do not share their reference pass).

    Returns
    -------
    DataFrame with one row per input row (same order): ``variant_id, status,
    status_detail, delta_ll, ref_ll, alt_ll`` (+ ``delta_ll_fwd``,
    ``delta_ll_rev`` for ``strand="both"``), ``window_start, offset,
    n_count``. Non-``ok`` rows have NaN scores.
    """
    if reduce not in REDUCTIONS:
        raise ValueError(f"reduce must be 'mean', 'sum' or 'aligned', not {reduce!r}")
    if strand not in ("fwd", "rev", "both"):
        raise ValueError(f"strand must be 'fwd', 'rev' or 'both', not {strand!r}")
    centred_bounds(window)  # refuses odd windows (ValueError)
    if chunk_rows < 1:
        raise ValueError("chunk_rows must be >= 1")
    bar = tqdm(total=len(variants), desc="score", unit="var", disable=not progress or len(variants) == 0)
    parts = []
    for lo in range(0, len(variants), chunk_rows):
        block = variants.iloc[lo:lo + chunk_rows]
        parts.append(_score_block(model, genome, block, window, reduce, strand, span, batch_size, reuse_prefix))
        bar.update(len(block))
    bar.close()
    if not parts:
        return _score_block(model, genome, variants, window, reduce, strand, span, batch_size, reuse_prefix)
    out = pd.concat(parts)
    if strand == "both" or reduce == "aligned":  # keep the column set stable when a chunk had no ok row
        for c in (("delta_ll_fwd", "delta_ll_rev") if strand == "both" else ()) + \
                (("delta_ll_allele",) if reduce == "aligned" else ()):
            if c not in out.columns:
                out[c] = math.nan
    return out


def _score_block(model, genome: Genome, variants: pd.DataFrame, window: int, reduce: str, strand: str,
                 span: int | None, batch_size: int, reuse_prefix: bool) -> pd.DataFrame:
    progress = False
    preps = prepare_variants(genome, variants, *centred_bounds(window))
    ok = [p for p in preps if p.status == "ok"]
    n = len(preps)
    cols = {c: np.full(n, np.nan) for c in SCORE_COLUMNS}
    status = [p.status for p in preps]
    detail = [p.status_detail for p in preps]
    if getattr(model, "kind", "causal") == "masked":
        res = _masked_scores(model, ok, batch_size, progress)
        for row, v in res.items():
            if isinstance(v, str):
                status[row] = v
                detail[row] = "masked-marginal scoring needs same-length alleles"
            else:
                cols["ref_ll"][row], cols["alt_ll"][row] = v
                cols["delta_ll"][row] = v[1] - v[0]
    else:
        strands = ["fwd", "rev"] if strand == "both" else [strand]
        per: dict[str, dict[int, tuple[float, float]]] = {}
        for s in strands:
            per[s] = _strand_scores(model, ok, s == "rev", reduce, span, batch_size, reuse_prefix, progress)
        for s in strands:
            d = np.full(n, np.nan)
            for row, (r, a, *_) in per[s].items():
                d[row] = a - r
            if strand == "both":
                cols[f"delta_ll_{s}"] = d
        if reduce == "aligned":
            cols["delta_ll_allele"] = np.full(n, np.nan)
        for p in ok:
            r = np.mean([per[s][p.row][0] for s in strands])
            a = np.mean([per[s][p.row][1] for s in strands])
            cols["ref_ll"][p.row], cols["alt_ll"][p.row] = r, a
            cols["delta_ll"][p.row] = float(np.mean([per[s][p.row][1] - per[s][p.row][0] for s in strands]))
            if reduce == "aligned":
                cols["delta_ll_allele"][p.row] = float(np.mean([per[s][p.row][3] - per[s][p.row][2]
                                                                for s in strands]))
    out = pd.DataFrame({
        "variant_id": [p.variant_id for p in preps],
        "status": status,
        "status_detail": detail,
        **cols,
        "window_start": [p.start if p.status == "ok" else -1 for p in preps],
        "offset": [p.offset if p.status == "ok" else -1 for p in preps],
        "n_count": [p.n_count for p in preps],
    }, index=variants.index)
    bad = out["status"] != "ok"
    for c in out.columns:
        if c.startswith(("delta_ll", "ref_ll", "alt_ll")):
            out.loc[bad, c] = math.nan
    return out


def evo2_zero_shot_reference(model, genome: Genome, variants: pd.DataFrame, window: int = 8192
                             ) -> np.ndarray:
    """Evo 2's published zero-shot recipe (BRCA1 notebook), re-implemented as the baseline.

    Batch size 1, full passes: for each variant the ``window``-bp reference
    window centred on it and the variant window (``ref[:p] + alt + ref[p+len(ref):]``)
    are scored by mean log-likelihood; identical reference windows are scored
    once. Returns Δ = mean LL(var) − mean LL(ref) (NaN for rows that are not ok).
    """
    preps = prepare_variants(genome, variants, *centred_bounds(window))
    cache: dict[str, float] = {}
    out = np.full(len(preps), np.nan)

    def mean_ll(seq: str) -> float:
        ids, _ = model.tokenize([seq])
        return float(model.log_probs(ids)[0].double().mean())

    for p in preps:
        if p.status != "ok":
            continue
        if p.ref_seq not in cache:
            cache[p.ref_seq] = mean_ll(p.ref_seq)
        out[p.row] = mean_ll(p.alt_seq) - cache[p.ref_seq]
    return out


def select_shard(table: pd.DataFrame, shard: int, n_shards: int) -> pd.DataFrame:
    """Rows of contiguous range ``shard`` of ``n_shards`` (ranges differ in size by at most one)."""
    if not 0 <= shard < n_shards:
        raise ValueError(f"shard must lie in [0, {n_shards}), got {shard}")
    n = len(table)
    lo, hi = shard * n // n_shards, (shard + 1) * n // n_shards
    return table.iloc[lo:hi]
