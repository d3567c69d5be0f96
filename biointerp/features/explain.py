"""Per-variant explanations: which SAE latents change most between reference and variant.

For each variant a window is taken with the variant ``offset`` bases in (a
causal model sees a change only at and after it); both alleles run through the
model and the SAE (batch-top-k per window). For each latent, ``delta`` is the
signed alt − ref difference of largest magnitude over the ``span`` positions
from the variant on, ``position`` the genomic position where it occurs, and
``z`` its z-score against all variants explained together. The result is a
long side table (``variant_id, rank, latent, delta, z, position, label, …``)
joined to scores on ``variant_id``.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd
import torch

from biointerp.features.intervene import encode_rows
from biointerp.features.sae import SparseAutoencoder

EXPLAIN_COLUMNS = ["variant_id", "rank", "latent", "delta", "z", "position", "label", "label_score", "status"]

#: Synthetic consequence class -> annotation classes that "match" it.
MATCHING_CLASSES: dict[str, tuple[str, ...]] = {
    "splice_donor": ("five_prime_cis_splice_site",),
    "splice_acceptor": ("three_prime_cis_splice_site",),
    "start_lost": ("start_codon",),
    "stop_lost": ("stop_codon",),
    "motif_disruption": ("TF_binding_site", "TATA_box"),
}


def _window(seqs, chrom: str, pos: int, window: int, offset: int) -> tuple[int, str]:
    """``(start1, sequence)`` of a ``window``-base window with ``pos`` ``offset`` bases in (shifted at edges)."""
    if isinstance(seqs, Mapping):
        s = seqs[chrom]
        start0 = max(0, min(pos - 1 - offset, len(s) - window))
        return start0 + 1, s[start0:start0 + window].upper()
    w = seqs.window(chrom, pos, offset, window - offset)
    return w.start, w.seq.upper()


def variant_deltas(model, sae: SparseAutoencoder, layer: str, seqs, variants: pd.DataFrame,
                   window: int = 256, offset: int = 192, span: int = 32, batch_size: int = 8,
                   progress: bool = False) -> tuple[np.ndarray, np.ndarray, pd.Series]:
    """``(delta [n, d_hidden], position [n, d_hidden], status [n])`` for ``variants``
    (``chrom, pos, ref, alt``); ``seqs`` is a {chrom: sequence} mapping or a :class:`biointerp.genome.Genome`.
    Rows whose ref allele disagrees with the reference get status ``ref_mismatch`` and NaN."""
    from tqdm.auto import tqdm

    n, H = len(variants), sae.d_hidden
    delta = np.full((n, H), np.nan, dtype=np.float32)
    where = np.full((n, H), -1, dtype=np.int64)
    status = pd.Series("ok", index=variants.index, dtype=object)
    jobs = []
    for i, r in enumerate(variants.itertuples(index=False)):
        try:
            start1, ref_seq = _window(seqs, r.chrom, int(r.pos), window, offset)
        except (KeyError, ValueError) as err:
            status.iat[i] = "unknown_contig" if isinstance(err, KeyError) else "out_of_bounds"
            continue
        o = int(r.pos) - start1
        if ref_seq[o:o + len(r.ref)] != str(r.ref).upper():
            status.iat[i] = "ref_mismatch"
            continue
        alt_seq = ref_seq[:o] + str(r.alt).upper() + ref_seq[o + len(r.ref):]
        jobs.append((i, start1, o, ref_seq, alt_seq))
    for b in tqdm(range(0, len(jobs), batch_size), desc="explain", unit="batch", disable=not progress):
        chunk = jobs[b:b + batch_size]
        seqs_b = [j[3] for j in chunk] + [j[4] for j in chunk]
        ids, mask = model.tokenize(seqs_b)
        h = model.forward(ids, mask, layers=[layer]).activations[layer].float().cpu()
        with torch.no_grad():
            for c, (i, start1, o, rs, as_) in enumerate(chunk):
                fr = encode_rows(sae, h[c:c + 1, :len(rs)])[0]
                fa = encode_rows(sae, h[len(chunk) + c:len(chunk) + c + 1, :len(as_)])[0]
                hi = min(o + span, len(rs), len(as_))
                d = (fa[o:hi] - fr[o:hi]).numpy()
                arg = np.abs(d).argmax(0)
                delta[i] = d[arg, np.arange(H)]
                where[i] = start1 + o + arg
    return delta, where, status


def zscores(delta: np.ndarray, min_std: float = 1e-3) -> np.ndarray:
    """Per-latent z-score of ``delta`` against all (finite) variants."""
    mu = np.nanmean(delta, 0)
    sd = np.maximum(np.nanstd(delta, 0), min_std)
    return (delta - mu) / sd


def explain_variants(model, sae: SparseAutoencoder, layer: str, seqs, variants: pd.DataFrame,
                     labels: pd.DataFrame | None = None, top: int = 10, rank_by: str = "z", window: int = 256,
                     offset: int = 192, span: int = 32, batch_size: int = 8, progress: bool = False) -> pd.DataFrame:
    """The ``top`` latents per variant ranked by ``|z|`` (or ``|delta|``), with their labels.

    ``labels``: a table indexed by latent with ``label`` and ``score`` columns
    (:func:`biointerp.features.label.best_labels`). Returns the long side table
    :data:`EXPLAIN_COLUMNS` (variants that could not be explained keep one row
    with their ``status`` and NaN)."""
    if rank_by not in ("z", "delta"):
        raise ValueError("rank_by must be 'z' or 'delta'")
    variants = variants.reset_index(drop=True)
    delta, where, status = variant_deltas(model, sae, layer, seqs, variants, window, offset, span, batch_size,
                                          progress)
    z = zscores(delta)
    key = np.abs(np.nan_to_num(z if rank_by == "z" else delta, nan=-1.0))
    order = np.argsort(-key, axis=1, kind="stable")[:, :top]
    lab = labels if labels is not None else pd.DataFrame(columns=["label", "score"])
    rows = []
    for i, vid in enumerate(variants["variant_id"].astype(str)):
        if status.iat[i] != "ok":
            rows.append((vid, 0, -1, np.nan, np.nan, -1, "", np.nan, status.iat[i]))
            continue
        for r, j in enumerate(order[i]):
            lj = lab.loc[j] if j in lab.index else None
            rows.append((vid, r + 1, int(j), float(delta[i, j]), float(z[i, j]), int(where[i, j]),
                         "" if lj is None else str(lj["label"]), np.nan if lj is None else float(lj["score"]), "ok"))
    return pd.DataFrame(rows, columns=EXPLAIN_COLUMNS)


def matching_share(expl: pd.DataFrame, variants: pd.DataFrame, top: int = 5,
                   matching: Mapping[str, tuple[str, ...]] = MATCHING_CLASSES) -> pd.DataFrame:
    """Per consequence class in ``matching``: the share of variants whose ``top`` explanations
    include a latent labelled with a matching annotation class (a ``:+`` / ``:-`` strand suffix is ignored)."""
    cons = variants.set_index("variant_id")["consequence"]
    e = expl[(expl["rank"] >= 1) & (expl["rank"] <= top)].copy()
    e["consequence"] = e["variant_id"].map(cons)
    out = []
    for cls, want in matching.items():
        ids = variants.loc[variants["consequence"] == cls, "variant_id"]
        if not len(ids):
            continue
        sub = e[e["variant_id"].isin(ids)]
        hit = sub.groupby("variant_id")["label"].apply(lambda s: bool(s.str.split(":").str[0].isin(want).any()))
        out.append({"consequence": cls, "matching": "|".join(want), "n": int(len(ids)),
                    "share": float(hit.reindex(ids, fill_value=False).mean())})
    return pd.DataFrame(out)


def plot_explanation(expl: pd.DataFrame, variant_id: str, path) -> None:
    """A bar chart PNG of one variant's top latents (Δ, labelled)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sub = expl[(expl["variant_id"] == variant_id) & (expl["rank"] >= 1)].sort_values("rank")
    fig, ax = plt.subplots(figsize=(6, 0.35 * max(len(sub), 3) + 1))
    names = [f"{int(r.latent)} {r.label}".strip() for r in sub.itertuples()]
    ax.barh(range(len(sub)), sub["delta"], color=np.where(sub["delta"] < 0, "#c0392b", "#2e86c1"))
    ax.set_yticks(range(len(sub)), names)
    ax.invert_yaxis()
    ax.axvline(0, color="k", lw=0.5)
    ax.set_xlabel("Δ latent activation (alt − ref)")
    ax.set_title(variant_id)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def format_explanation(expl: pd.DataFrame, variant_id: str) -> str:
    """Plain-text lines for one variant's explanation."""
    sub = expl[expl["variant_id"] == variant_id].sort_values("rank")
    if sub.empty:
        raise KeyError(f"{variant_id} is not in the explanations table")
    if (sub["status"] != "ok").all():
        return f"{variant_id}: not explained ({sub['status'].iat[0]})"
    lines = [f"{variant_id}: top {len(sub)} latents by change (alt - ref)",
             f"{'rank':>4} {'latent':>7} {'delta':>9} {'z':>8} {'position':>10}  label (score)"]
    for r in sub.itertuples():
        lab = f"{r.label} ({r.label_score:.2f})" if r.label else "-"
        lines.append(f"{r.rank:>4} {r.latent:>7} {r.delta:>9.3f} {r.z:>8.2f} {r.position:>10}  {lab}")
    return "\n".join(lines)
