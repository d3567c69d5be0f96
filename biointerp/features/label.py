"""Feature tables and labels: encode a genome into SAE latents and score every
latent against annotation classes.

* :func:`read_annotations` reads GFF3, GTF, BED or GenBank into one table
  (``chrom, start, end`` 1-based inclusive, ``type, strand, name``);
* :func:`encode_genome` runs a model and an SAE over windows tiling contigs and
  returns a sparse ``[positions, latents]`` matrix (each position once, with at
  least ``skip`` bases of left context except at a contig start);
* :func:`label_latents` scores every latent for every class: AUROC at base level
  (activation vs the class mask, exact ranks with ties), AUROC at element level
  (max activation inside each element vs inside length-matched spans outside
  the class) and precision among the ``top_n`` highest-activating positions;
* :func:`feature_table` packs it into AnnData (sparse ``X``; ``var`` = latents
  with firing rate, mean activation, best label and its scores; ``obs`` = positions).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

ANN_COLUMNS = ["chrom", "start", "end", "type", "strand", "name"]
#: Annotation types too broad to be a feature label by default (a gene or transcript span
#: covers its exons, introns and UTRs alike).
BROAD_TYPES = ("region", "chromosome", "source", "gene", "mRNA", "transcript")


# --------------------------------------------------------------------------- annotations
def read_annotations(path: str | Path) -> pd.DataFrame:
    """Read GFF3 / GTF / BED / GenBank annotations into ``chrom, start, end, type, strand, name``
    (1-based inclusive). BED's ``name`` column (before a ``:``) is the type. A damaged or
    mislabelled file is a ValueError naming the file (not a parser traceback)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such annotation file")
    try:
        return _read_annotations(path)
    except (pd.errors.ParserError, UnicodeDecodeError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: not a readable annotation file ({type(err).__name__}: {err})") from err


def _read_annotations(path: Path) -> pd.DataFrame:
    suf = "".join(path.suffixes[-2:]).lower().replace(".gz", "") or path.suffix.lower()
    suf = Path("x" + suf).suffix
    if suf in (".gff", ".gff3", ".gtf"):
        cols = ["chrom", "source", "type", "start", "end", "score", "strand", "phase", "attrs"]
        df = pd.read_csv(path, sep="\t", comment="#", header=None, names=cols, dtype={"chrom": str},
                         compression="infer")
        sep = "=" if suf != ".gtf" else " "
        df["name"] = df["attrs"].fillna("").map(lambda a: _attr(a, sep))
        return _tidy(df, path)
    if suf == ".bed":
        df = pd.read_csv(path, sep="\t", comment="#", header=None, dtype={0: str}, compression="infer")
        if df.shape[1] < 3:
            raise ValueError(f"{path}: a BED file needs at least chrom, start, end")
        out = pd.DataFrame({"chrom": df[0], "start": pd.to_numeric(df[1], errors="coerce") + 1,
                            "end": pd.to_numeric(df[2], errors="coerce")})
        name = df[3].astype(str) if df.shape[1] > 3 else pd.Series("region", index=df.index)
        out["type"] = name.str.split(":").str[0]
        out["name"] = name.str.split(":", n=1).str[1].fillna("")
        out["strand"] = df[5].astype(str) if df.shape[1] > 5 else "."
        return _tidy(out, path)
    if suf in (".gb", ".gbk", ".genbank", ".gbff"):
        from Bio import SeqIO

        rows = []
        for rec in SeqIO.parse(str(path), "genbank"):
            for f in rec.features:
                strand = {1: "+", -1: "-"}.get(f.location.strand, ".")
                name = (f.qualifiers.get("gene") or f.qualifiers.get("product") or [""])[0]
                rows.append((rec.id, int(f.location.start) + 1, int(f.location.end), f.type, strand, name))
        return _tidy(pd.DataFrame(rows, columns=ANN_COLUMNS), path)
    raise ValueError(f"{path}: unknown annotation format; use .gff3, .gtf, .bed or .gb (GenBank)")


def _attr(a: str, sep: str) -> str:
    for part in a.split(";"):
        part = part.strip()
        for key in ("Name", "gene_name", "ID", "gene_id"):
            if part.startswith(key + sep):
                return part[len(key) + 1:].strip().strip('"')
    return ""


def _tidy(df: pd.DataFrame, path: Path) -> pd.DataFrame:
    df = df.copy()
    for col in ("start", "end"):
        df[col] = pd.to_numeric(df[col], errors="coerce")
    bad = df["start"].isna() | df["end"].isna()
    if bad.any():
        raise ValueError(f"{path}: {int(bad.sum())} of {len(df)} records have no numeric start/end "
                         f"(first: {df.loc[bad, ['chrom', 'start', 'end']].iloc[0].tolist()}); "
                         "is it the format its suffix says?")
    df["strand"] = df.get("strand", ".").fillna(".").astype(str)
    df["name"] = df.get("name", "").fillna("").astype(str)
    return df[ANN_COLUMNS].astype({"chrom": str, "start": int, "end": int, "type": str}).reset_index(drop=True)


def annotation_classes(ann: pd.DataFrame, min_count: int = 10, stranded: bool = False,
                       exclude: Sequence[str] = BROAD_TYPES) -> list[str]:
    """Classes to label against: every type with at least ``min_count`` elements
    (``type:+`` / ``type:-`` when ``stranded``)."""
    key = _class_key(ann, stranded)
    counts = key[~ann["type"].isin(exclude)].value_counts()
    return sorted(counts[counts >= min_count].index)


def _class_key(ann: pd.DataFrame, stranded: bool) -> pd.Series:
    return ann["type"] + ":" + ann["strand"] if stranded else ann["type"]


def class_masks(ann: pd.DataFrame, obs: pd.DataFrame, classes: Sequence[str], stranded: bool = False) -> np.ndarray:
    """Boolean ``[positions, classes]``: which class each position of ``obs`` (chrom, pos 1-based) lies in."""
    key = _class_key(ann, stranded)
    Y = np.zeros((len(obs), len(classes)), dtype=bool)
    for chrom, idx in obs.groupby("chrom", sort=False).indices.items():
        pos = obs["pos"].to_numpy()[idx]
        lo, hi = int(pos.min()), int(pos.max())
        sub = ann[(ann["chrom"] == chrom) & (ann["end"] >= lo) & (ann["start"] <= hi)]
        skey = key.loc[sub.index]
        for c, cls in enumerate(classes):
            m = np.zeros(hi - lo + 2, dtype=np.int32)
            for r in sub[skey == cls].itertuples(index=False):
                a, b = max(r.start, lo), min(r.end, hi)
                m[a - lo] += 1
                m[b - lo + 1] -= 1
            Y[idx, c] = np.cumsum(m)[pos - lo] > 0
    return Y


# --------------------------------------------------------------------------- encoding
def encode_genome(model, sae, contigs: dict[str, str], layer: str, window: int = 512, skip: int = 64,
                  batch_size: int = 8, regions: dict[str, tuple[int, int]] | None = None,
                  progress: bool = False) -> tuple[sp.csr_matrix, pd.DataFrame]:
    """SAE latents of every position of ``contigs`` (or of ``regions`` {chrom: (start1, end1)}).

    Windows overlap by ``skip`` so each position is encoded once with >= ``skip``
    bases of left context (except at a region start). Batch-top-k selection runs
    per window. Returns ``(X csr [N, d_hidden] float32, obs [chrom, pos 1-based])``."""
    import torch
    from tqdm.auto import tqdm

    from biointerp.features.intervene import encode_rows

    jobs = []
    for chrom, seq in contigs.items():
        a, b = regions.get(chrom, (1, len(seq))) if regions else (1, len(seq))
        a0, b0 = a - 1, min(b, len(seq))
        s = a0
        while True:
            s0 = min(s, max(a0, b0 - window))
            keep_from = 0 if s0 == a0 else (s - s0) + skip if s > s0 else skip
            keep_from = min(keep_from, window)
            jobs.append((chrom, s0, keep_from, seq[s0:min(s0 + window, b0)]))
            if s0 + window >= b0:
                break
            s = s0 + window - skip
    blocks, chroms, poss = [], [], []
    for i in tqdm(range(0, len(jobs), batch_size), desc="encode", unit="batch", disable=not progress):
        chunk = jobs[i:i + batch_size]
        ids, mask = model.tokenize([j[3] for j in chunk])
        h = model.forward(ids, mask, layers=[layer]).activations[layer].float().cpu()
        with torch.no_grad():
            for (chrom, s0, kf, sq), hr in zip(chunk, h):
                f = encode_rows(sae, hr[None, :len(sq)])[0][kf:]
                blocks.append(sp.csr_matrix(f.numpy()))
                chroms.append(np.full(f.shape[0], chrom, dtype=object))
                poss.append(np.arange(s0 + kf + 1, s0 + len(sq) + 1))
    X = sp.vstack(blocks, format="csr").astype(np.float32)
    obs = pd.DataFrame({"chrom": np.concatenate(chroms), "pos": np.concatenate(poss)})
    obs.index = obs["chrom"].astype(str) + ":" + obs["pos"].astype(str)
    return X, obs


# --------------------------------------------------------------------------- scores
def rankdata(a: np.ndarray) -> np.ndarray:
    """Ranks 1..n of ``a`` with ties given their average rank (as ``scipy.stats.rankdata``)."""
    a = np.asarray(a)
    order = np.argsort(a, kind="mergesort")
    s = a[order]
    new = np.r_[True, s[1:] != s[:-1]]
    group = np.cumsum(new) - 1
    starts = np.flatnonzero(new)
    ends = np.r_[starts[1:], len(s)]
    avg = (starts + ends + 1) / 2.0
    out = np.empty(len(a), dtype=float)
    out[order] = avg[group]
    return out


def sparse_auroc(X: sp.spmatrix, Y: np.ndarray) -> np.ndarray:
    """Exact AUROC ``[latents, classes]`` of each column of sparse ``X`` (implicit zeros tie) for each
    boolean column of ``Y``; NaN for a class with no positives or no negatives."""
    Xc = sp.csc_matrix(X)
    N = Xc.shape[0]
    Y = np.asarray(Y, dtype=bool)
    P = Y.sum(0).astype(float)
    out = np.full((Xc.shape[1], Y.shape[1]), np.nan)
    ok = (P > 0) & (P < N)
    for j in range(Xc.shape[1]):
        lo, hi = Xc.indptr[j], Xc.indptr[j + 1]
        rows, vals = Xc.indices[lo:hi], Xc.data[lo:hi]
        m = len(vals)
        ranks = (N - m) + rankdata(vals) if m else np.zeros(0)
        ynz = Y[rows]
        pos_nz = ynz.sum(0)
        R = ranks @ ynz + (P - pos_nz) * (N - m + 1) / 2
        out[j, ok] = ((R - P * (P + 1) / 2) / (P * (N - P)))[ok]
    return out


def precision_at_top(X: sp.spmatrix, Y: np.ndarray, top_n: int = 100) -> np.ndarray:
    """Share of each latent's ``top_n`` highest-activating positions (nonzero only) inside each class."""
    Xc = sp.csc_matrix(X)
    out = np.full((Xc.shape[1], Y.shape[1]), np.nan)
    for j in range(Xc.shape[1]):
        lo, hi = Xc.indptr[j], Xc.indptr[j + 1]
        if hi == lo:
            continue
        vals, rows = Xc.data[lo:hi], Xc.indices[lo:hi]
        top = rows[np.argsort(-vals, kind="stable")[:top_n]]
        out[j] = Y[top].mean(0)
    return out


def _element_spans(obs: pd.DataFrame, ann: pd.DataFrame, Y: np.ndarray, classes: Sequence[str], stranded: bool,
                   seed: int, max_elements: int) -> list[tuple[list[list[int]], list[list[int]]]]:
    """Per class: (row lists of its elements, row lists of length-matched spans outside the class)."""
    rng = np.random.default_rng(seed)
    key = _class_key(ann, stranded)
    row_of = {(c, int(p)): i for i, (c, p) in enumerate(zip(obs["chrom"], obs["pos"]))}
    chrom = obs["chrom"].to_numpy()
    out = []
    for ci, cls in enumerate(classes):
        pos_spans, neg_spans = [], []
        els = ann[(key == cls) & ann["chrom"].isin(set(obs["chrom"]))]
        if len(els) > max_elements:
            els = els.iloc[np.sort(rng.choice(len(els), max_elements, replace=False))]
        outside = np.flatnonzero(~Y[:, ci])
        for r in els.itertuples(index=False):
            rows = [x for x in (row_of.get((r.chrom, p)) for p in range(r.start, r.end + 1)) if x is not None]
            if not rows:
                continue
            pos_spans.append(rows)
            for _ in range(10):  # a length-matched span fully outside the class, same contig
                st = int(outside[rng.integers(len(outside))]) if len(outside) else 0
                neg = list(range(st, min(st + len(rows), len(obs))))
                if neg and chrom[neg[-1]] == chrom[st] and not Y[neg, ci].any():
                    neg_spans.append(neg)
                    break
        out.append((pos_spans, neg_spans))
    return out


def _span_max(Xc: sp.csc_matrix, spans: list[list[int]]) -> np.ndarray:
    """Max activation of every latent inside each span, ``[n_spans, latents]``."""
    flat = np.concatenate(spans)
    starts = np.cumsum([0] + [len(s) for s in spans[:-1]])
    return np.maximum.reduceat(Xc[flat].toarray(), starts, axis=0)


def element_auroc(X: sp.spmatrix, obs: pd.DataFrame, ann: pd.DataFrame, classes: Sequence[str],
                  stranded: bool = False, seed: int = 0, max_elements: int = 2000,
                  spans: list | None = None) -> np.ndarray:
    """AUROC ``[latents, classes]`` at element level: max activation inside each element of the
    class vs inside a length-matched span at a random place outside the class (same contigs)."""
    Xc = sp.csc_matrix(X)
    if spans is None:
        spans = _element_spans(obs, ann, class_masks(ann, obs, classes, stranded), classes, stranded, seed,
                               max_elements)
    out = np.full((X.shape[1], len(classes)), np.nan)
    for ci, (pos_spans, neg_spans) in enumerate(spans):
        if len(pos_spans) < 2 or len(neg_spans) < 2:
            continue
        mx = _span_max(Xc, pos_spans + neg_spans)
        y = np.r_[np.ones(len(pos_spans)), np.zeros(len(neg_spans))]
        out[:, ci] = _dense_auroc(mx, y)
    return out


def element_f1(X: sp.spmatrix, Y: np.ndarray, spans: list, n_thresholds: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Best F1 ``[latents, classes]`` over activation thresholds, with precision counted over positions
    (share of positions at or above the threshold inside the class) and recall over elements (share of
    the class's elements with a position at or above it), and the threshold reaching it."""
    Xc = sp.csc_matrix(X)
    H, C = Xc.shape[1], Y.shape[1]
    f1 = np.zeros((H, C))
    thr = np.full((H, C), np.nan)
    el_max = [(_span_max(Xc, p) if p else None) for p, _ in spans]
    for j in range(H):
        lo, hi = Xc.indptr[j], Xc.indptr[j + 1]
        if hi == lo:
            continue
        vals, rows = Xc.data[lo:hi], Xc.indices[lo:hi]
        order = np.argsort(-vals, kind="stable")
        v = vals[order]
        tp = np.cumsum(Y[rows[order]], axis=0)  # [m, C]
        cuts = np.unique(np.linspace(0, len(v) - 1, n_thresholds).round().astype(int))
        for c in range(C):
            if el_max[c] is None:
                continue
            prec = tp[cuts, c] / (cuts + 1)
            rec = (el_max[c][:, j][None, :] >= v[cuts][:, None]).mean(1)
            f = np.where(prec + rec > 0, 2 * prec * rec / np.maximum(prec + rec, 1e-12), 0.0)
            b = int(f.argmax())
            f1[j, c], thr[j, c] = f[b], v[cuts[b]]
    return f1, thr


def _dense_auroc(S: np.ndarray, y: np.ndarray) -> np.ndarray:
    R = np.apply_along_axis(rankdata, 0, S)
    P, N = y.sum(), len(y) - y.sum()
    return (R[y == 1].sum(0) - P * (P + 1) / 2) / (P * N)


def label_latents(X: sp.spmatrix, obs: pd.DataFrame, ann: pd.DataFrame, classes: Sequence[str] | None = None,
                  stranded: bool = False, top_n: int = 100, element_level: bool = True,
                  seed: int = 0) -> pd.DataFrame:
    """Score every latent against every class. Returns a long table: ``latent, class, auroc,
    element_auroc, f1, f1_threshold, precision_top, n_positive`` (one row per latent × class)."""
    classes = list(classes) if classes is not None else annotation_classes(ann, stranded=stranded)
    if not classes:
        raise ValueError("no annotation classes to label against (check contig names and min_count)")
    Y = class_masks(ann, obs, classes, stranded)
    auc = sparse_auroc(X, Y)
    prec = precision_at_top(X, Y, top_n)
    el = f1 = thr = np.full_like(auc, np.nan)
    if element_level:
        spans = _element_spans(obs, ann, Y, classes, stranded, seed, max_elements=2000)
        el = element_auroc(X, obs, ann, classes, stranded, seed, spans=spans)
        f1, thr = element_f1(X, Y, spans)
    H, C = auc.shape
    return pd.DataFrame({"latent": np.repeat(np.arange(H), C), "class": np.tile(classes, H),
                         "auroc": auc.ravel(), "element_auroc": el.ravel(), "f1": f1.ravel(),
                         "f1_threshold": thr.ravel(), "precision_top": prec.ravel(),
                         "n_positive": np.tile(Y.sum(0), H)})


def best_labels(scores: pd.DataFrame, min_score: float = 0.0, by: str = "f1") -> pd.DataFrame:
    """One row per latent: its best class by ``by`` (``f1`` by default: specific and covering
    the class's elements; or ``auroc`` / ``element_auroc``); ``label`` empty below ``min_score``."""
    by = by if by in scores.columns and scores[by].notna().any() else "auroc"
    s = scores.dropna(subset=[by]).sort_values(["latent", by], ascending=[True, False])
    best = s.groupby("latent", sort=True).head(1).set_index("latent")
    best = best.rename(columns={"class": "label"})
    best.loc[best[by] < min_score, "label"] = ""
    best["score"] = best[by]
    cols = ["label", "score", "auroc", "element_auroc", "f1", "precision_top"]
    return best[[c for c in cols if c in best.columns]]


def best_per_class(scores: pd.DataFrame, by: str = "auroc") -> pd.DataFrame:
    """One row per class: the latent with the highest ``by`` score and its scores."""
    s = scores.dropna(subset=[by]).sort_values(["class", by], ascending=[True, False])
    return s.groupby("class", sort=True).head(1).set_index("class")


def feature_table(X: sp.spmatrix, obs: pd.DataFrame, scores: pd.DataFrame | None = None,
                  card: dict | None = None, min_score: float = 0.2, by: str = "f1"):
    """AnnData of SAE latents: sparse ``X [positions, latents]``; ``var``: ``firing_rate``,
    ``mean_activation`` (over firing positions), ``label`` (best class by ``by``, empty below
    ``min_score``), ``label_score``, ``label_auroc``, ``label_element_auroc``, ``label_f1``,
    ``label_precision_top``; ``uns["sae"]`` = the SAE card, ``uns["label_scores"]`` = long table."""
    import anndata as ad

    X = sp.csr_matrix(X, dtype=np.float32)
    nnz = np.diff(sp.csc_matrix(X).indptr)
    sums = np.asarray(X.sum(0)).ravel()
    var = pd.DataFrame({"firing_rate": nnz / max(X.shape[0], 1),
                        "mean_activation": np.where(nnz > 0, sums / np.maximum(nnz, 1), 0.0)},
                       index=[f"latent_{j}" for j in range(X.shape[1])])
    var["label"] = ""
    cols = ("score", "auroc", "element_auroc", "f1", "precision_top")
    for col in cols:
        var[f"label_{col}"] = np.nan
    uns: dict = {"sae": card or {}}
    if scores is not None and len(scores):
        best = best_labels(scores, min_score, by)
        idx = [f"latent_{j}" for j in best.index]
        var.loc[idx, "label"] = best["label"].to_numpy()
        for col in cols:
            if col in best.columns:
                var.loc[idx, f"label_{col}"] = best[col].to_numpy()
        uns["label_scores"] = {c: scores[c].to_numpy() for c in scores.columns}
        uns["label_rule"] = {"by": by, "min_score": min_score}
    obs = obs.copy()
    obs.index = obs.index.astype(str)
    return ad.AnnData(X=X, obs=obs, var=var, uns=uns)
