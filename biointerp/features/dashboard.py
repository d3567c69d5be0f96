"""Feature dashboards: each latent's top-activating contexts with the annotation under the sequence.

:func:`top_contexts` picks, per latent, the highest-activating positions at
least ``min_gap`` bases apart; :func:`write_dashboard` writes one PNG per
latent (activation-coloured bases, annotation spans drawn underneath) and a
static ``index.html`` listing latents with their labels and scores.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp


def top_contexts(X: sp.spmatrix, obs: pd.DataFrame, latent: int, n: int = 8, min_gap: int = 50) -> pd.DataFrame:
    """Up to ``n`` (chrom, pos, activation) rows: ``latent``'s top positions, ``min_gap`` apart."""
    col = sp.csc_matrix(X[:, latent])
    rows, vals = col.indices, col.data
    order = np.argsort(-vals, kind="stable")
    picked: list[int] = []
    for i in order:
        r = rows[i]
        c, p = obs["chrom"].iat[r], int(obs["pos"].iat[r])
        if all(not (obs["chrom"].iat[q] == c and abs(int(obs["pos"].iat[q]) - p) < min_gap) for q in picked):
            picked.append(r)
        if len(picked) >= n:
            break
    return pd.DataFrame({"chrom": obs["chrom"].to_numpy()[picked], "pos": obs["pos"].to_numpy()[picked],
                         "activation": np.asarray(X[picked, latent].todense()).ravel() if picked else []})


def _context(seqs, X, row_of, latent, chrom, pos, flank):
    s = seqs[chrom] if isinstance(seqs, Mapping) else None
    lo = max(1, pos - flank)
    hi = min(seqs.bounds(chrom)[1], pos + flank) if s is None else min(len(s), pos + flank)
    seq = s[lo - 1:hi] if s is not None else seqs.fetch(chrom, lo, hi)
    rows = [row_of.get((chrom, p)) for p in range(lo, hi + 1)]
    act = np.array([X[r, latent] if r is not None else 0.0 for r in rows], dtype=float)
    return lo, seq, act


def write_dashboard(X: sp.spmatrix, obs: pd.DataFrame, var: pd.DataFrame, seqs, ann: pd.DataFrame | None,
                    out_dir: str | Path, latents: Sequence[int], n_contexts: int = 6, flank: int = 30) -> Path:
    """Write ``out_dir/index.html`` and ``out_dir/latent_<j>.png`` for ``latents``; returns the index path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    Xr = sp.csr_matrix(X)
    row_of = {(c, int(p)): i for i, (c, p) in enumerate(zip(obs["chrom"], obs["pos"]))}
    colors = plt.get_cmap("tab10")
    items = []
    for j in latents:
        ctx = top_contexts(Xr, obs, j, n_contexts)
        fig, axes = plt.subplots(max(len(ctx), 1), 1, figsize=(12, 0.9 * max(len(ctx), 1) + 0.4), squeeze=False)
        cells = []
        vmax = float(ctx["activation"].max()) if len(ctx) else 1.0
        for ax, r in zip(axes[:, 0], ctx.itertuples(index=False)):
            lo, seq, act = _context(seqs, Xr, row_of, j, r.chrom, int(r.pos), flank)
            ax.imshow(act[None, :], aspect="auto", cmap="Oranges", vmin=0, vmax=vmax or 1.0,
                      extent=(-0.5, len(seq) - 0.5, 0, 1))
            for i, b in enumerate(seq):
                ax.text(i, 0.5, b, ha="center", va="center", fontsize=7, family="monospace")
            types = []
            if ann is not None:
                near = ann[(ann["chrom"] == r.chrom) & (ann["end"] >= lo) & (ann["start"] <= lo + len(seq) - 1)]
                near = near[~near["type"].isin(["gene", "mRNA"])]
                for k, a in enumerate(near.itertuples(index=False)):
                    x0, x1 = max(a.start, lo) - lo - 0.5, min(a.end, lo + len(seq) - 1) - lo + 0.5
                    ax.plot([x0, x1], [-0.15 - 0.12 * (k % 3)] * 2, lw=3, color=colors(hash(a.type) % 10),
                            solid_capstyle="butt")
                    ax.text(x0, -0.15 - 0.12 * (k % 3), a.type, fontsize=6, va="center")
                    types.append(a.type)
            ax.set_ylim(-0.55, 1)
            ax.set_xlim(-0.5, len(seq) - 0.5)
            ax.set_yticks([])
            ax.set_xticks([])
            ax.set_ylabel(f"{r.chrom}:{r.pos}\n{r.activation:.2f}", rotation=0, ha="right", va="center", fontsize=7)
            spans = "".join(f'<span style="background:rgba(230,120,20,{min(a / (vmax or 1), 1):.2f})">{b}</span>'
                            for b, a in zip(seq, act))
            cells.append(f"<tr><td>{html.escape(str(r.chrom))}:{int(r.pos)}</td><td>{r.activation:.2f}</td>"
                         f"<td class=seq>{spans}</td><td>{html.escape(', '.join(sorted(set(types))))}</td></tr>")
        lab = var.iloc[j]
        fig.suptitle(f"latent {j}  {lab.get('label', '')}", fontsize=9)
        fig.tight_layout()
        fig.savefig(out / f"latent_{j}.png", dpi=90)
        plt.close(fig)
        items.append(f"<h2 id=l{j}>latent {j} <small>{html.escape(str(lab.get('label', '') or 'unlabelled'))} · "
                     f"F1 {lab.get('label_f1', float('nan')):.3f} · AUROC {lab.get('label_auroc', float('nan')):.3f} · "
                     f"element AUROC "
                     f"{lab.get('label_element_auroc', float('nan')):.3f} · firing rate "
                     f"{lab.get('firing_rate', float('nan')):.4f}</small></h2>"
                     f"<img src='latent_{j}.png' alt='latent {j}'><table><tr><th>position</th><th>act.</th>"
                     f"<th>context (±{flank} bp)</th><th>annotation</th></tr>{''.join(cells)}</table>")
    page = ("<!doctype html><meta charset=utf-8><title>biointerp feature dashboard</title>"
            "<style>body{font-family:sans-serif;margin:2em}td.seq{font-family:monospace}img{max-width:100%}"
            "table{border-collapse:collapse}td,th{padding:2px 6px;border-bottom:1px solid #ddd}</style>"
            f"<h1>SAE feature dashboard</h1><p>{len(items)} latents; bases shaded by activation.</p>"
            + "".join(items))
    index = out / "index.html"
    index.write_text(page)
    return index
