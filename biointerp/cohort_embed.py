"""Sample-level features: embed every sample's sequences with a model, pool, and build a samples x features AnnData.

Each distinct sequence of a :class:`~biointerp.cohort_seq.SequenceSet` runs through the model once
(``share=True``): a region that is reference-identical in 900 of 1,000 samples costs one forward
pass, not 900; identical haplotypes (common alleles) are shared the same way. ``share=False`` runs
every (sample, region, track) sequence on its own (the baseline of ``benchmarks/bench_cohort.py``;
same numbers).

Pooling, in order: over positions (``poolings``: ``mean`` and/or ``max`` of the layer's
activations over the real tokens), over tracks (the two haplotypes; ``track_pool="mean"``), over
regions (``region_pool``: ``"concat"`` keeps one block of features per region, ``"mean"``
averages regions into one block).

Output AnnData: ``obs`` = every sample of the sheet (label, covariates, ``status``; samples that
are not ``ok`` have NaN features), ``var`` = one row per feature with its origin (``model``,
``layer``, ``pooling``, ``encoding``, ``region``, ``chrom``, ``start``, ``end``, ``dim``), ``X``
float32, ``uns["biointerp"]`` provenance + ``embedding`` (sequence counts, forward passes, time).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence

import anndata as ad
import numpy as np
import pandas as pd

from biointerp.cohort import CohortError
from biointerp.cohort_seq import SequenceSet
from biointerp.tables import provenance

POOLINGS = ("mean", "max")


def embed_sequences(model, seqs: Sequence[str], layers: Sequence[str], poolings: Sequence[str] = ("mean",),
                    batch_size: int = 8, progress: bool = False, desc: str = "embed",
                    sae: tuple[str, object] | None = None) -> dict[tuple[str, str], np.ndarray]:
    """Pooled activations of ``seqs`` -> ``{(layer, pooling): [len(seqs), d] float32}``.

    Sequences are batched by length (little padding); pooling covers the real tokens only.
    ``sae=(layer, SparseAutoencoder)`` adds that layer's SAE latents (per-token top-k, so a
    sequence's latents do not depend on its batch) under the key ``(layer + ":sae", pooling)``.
    """
    import torch
    from tqdm.auto import tqdm

    bad = set(poolings) - set(POOLINGS)
    if bad:
        raise CohortError(f"unknown pooling {sorted(bad)}; use {list(POOLINGS)}")
    unknown = [lay for lay in layers if lay not in set(model.layer_names)]
    if unknown:
        raise CohortError(f"unknown layer(s) {unknown} for {model.name}; e.g. {model.layer_names[1:6]}")
    n = len(seqs)
    out = {(lay, p): None for lay in layers for p in poolings}
    if sae is not None:
        if sae[0] not in layers:
            layers = [*layers, sae[0]]
        out.update({(sae[0] + ":sae", p): None for p in poolings})
    order = sorted(range(n), key=lambda i: len(seqs[i]))
    for b in tqdm(range(0, n, batch_size), desc=desc, unit="batch", disable=not progress):
        idx = order[b:b + batch_size]
        ids, mask = model.tokenize([seqs[i] for i in idx])
        res = model.forward(ids, mask, layers=list(layers))
        m = mask.to(torch.float32)[..., None]
        acts = {lay: res.activations[lay].float().cpu() for lay in layers}
        if sae is not None:
            with torch.no_grad():
                acts[sae[0] + ":sae"] = sae[1].encode(acts[sae[0]].to(sae[1].W.device), kind="topk").float().cpu()
        for lay, a in acts.items():
            if (lay, poolings[0]) not in out:
                continue
            for p in poolings:
                if p == "mean":
                    v = (a * m).sum(1) / m.sum(1).clamp_min(1.0)
                else:
                    v = a.masked_fill(m == 0, float("-inf")).amax(1)
                arr = out[(lay, p)]
                if arr is None:
                    arr = out[(lay, p)] = np.zeros((n, v.shape[-1]), dtype=np.float32)
                arr[idx] = v.numpy()
    return out


def sample_features(model, seqset: SequenceSet, layers: Sequence[str], poolings: Sequence[str] = ("mean",),
                    region_pool: str = "concat", track_pool: str = "mean", encodings: Sequence[str] | None = None,
                    share: bool = True, batch_size: int = 8, model_spec: str | None = None,
                    sae: tuple[str, object] | None = None, progress: bool = False) -> ad.AnnData:
    """Samples x features AnnData from a sequence set (module doc).

    Parameters
    ----------
    model
        Any :class:`biointerp.models.GenomicModel` (native, HF, demo).
    layers, poolings
        Layer names (``model.layer_names``) and position poolings (``mean``, ``max``).
    region_pool
        ``"concat"`` (features per region) or ``"mean"`` (averaged over regions).
    track_pool
        ``"mean"`` (average of the haplotypes) or ``"max"``.
    encodings
        Which encodings to use (default: all in the set, e.g. ``dna`` or ``extended``/``bisulfite``).
    share
        Embed each distinct sequence once (default) or every row on its own (baseline).
    sae
        ``(layer, SparseAutoencoder)`` (:mod:`biointerp.features`): also pool that layer's SAE
        latents (features with ``layer`` ``"<layer>:sae"``, ``dim`` = latent id).
    """
    if region_pool not in ("concat", "mean"):
        raise CohortError(f"region_pool must be concat or mean, not {region_pool!r}")
    if track_pool not in ("mean", "max"):
        raise CohortError(f"track_pool must be mean or max, not {track_pool!r}")
    rows = seqset.sequences
    have = list(dict.fromkeys(rows["encoding"])) if len(rows) else []
    encodings = list(encodings) if encodings else have
    missing = set(encodings) - set(have)
    if missing:
        raise CohortError(f"encodings {sorted(missing)} not in the sequence set (it has {have})")
    rows = rows[rows["encoding"].isin(encodings)].reset_index(drop=True)
    if rows.empty:
        raise CohortError("no sequences to embed: no sample is usable (see samples.tsv status)")
    t0 = time.perf_counter()
    if share:
        uniq = list(dict.fromkeys(rows["seq_id"]))
        embs = embed_sequences(model, [seqset.unique[k] for k in uniq], layers, poolings, batch_size, progress,
                               sae=sae)
        pos = {k: i for i, k in enumerate(uniq)}
        row_idx = rows["seq_id"].map(pos).to_numpy()
        n_forward = len(uniq)
    else:
        embs = embed_sequences(model, [seqset.unique[k] for k in rows["seq_id"]], layers, poolings, batch_size,
                               progress, sae=sae)
        row_idx = np.arange(len(rows))
        n_forward = len(rows)
    seconds = time.perf_counter() - t0

    samples = seqset.samples
    regions = seqset.regions.set_index("region")
    s_pos = {s: i for i, s in enumerate(samples.index)}
    reg_names = [r for r in seqset.regions["region"] if r in set(rows["region"])]
    blocks, var_rows = [], []
    for enc in encodings:
        sub = rows["encoding"].to_numpy() == enc
        for (lay, p), E in embs.items():
            d = E.shape[1]
            per_region = np.full((len(samples), len(reg_names), d), np.nan, dtype=np.float32)
            for ri, reg in enumerate(reg_names):
                m = sub & (rows["region"].to_numpy() == reg)
                r_rows = rows[m]
                vecs = E[row_idx[m]]
                si = r_rows["sample"].map(s_pos).to_numpy()
                df = pd.DataFrame(vecs)
                agg = df.groupby(si).agg(track_pool)
                per_region[agg.index.to_numpy(), ri] = agg.to_numpy(dtype=np.float32)
            if region_pool == "concat":
                blocks.append(per_region.reshape(len(samples), -1))
                for reg in reg_names:
                    r = regions.loc[reg]
                    var_rows += [dict(encoding=enc, region=reg, chrom=r["chrom"], start=int(r["start"]),
                                      end=int(r["end"]), layer=lay, pooling=p, dim=k) for k in range(d)]
            else:
                with np.errstate(invalid="ignore"):
                    with warnings.catch_warnings():  # samples that are not ok: all NaN, stay NaN
                        warnings.simplefilter("ignore", RuntimeWarning)
                        blocks.append(np.nanmean(per_region, axis=1))
                var_rows += [dict(encoding=enc, region="all", chrom="", start=-1, end=-1, layer=lay, pooling=p,
                                  dim=k) for k in range(d)]
    X = np.concatenate(blocks, axis=1).astype(np.float32)
    var = pd.DataFrame(var_rows)
    var.insert(0, "model", model.name)
    var.index = pd.Index([f"{r.encoding}|{r.region}|{r.layer}|{r.pooling}|{r.dim}" for r in var.itertuples()],
                         name="feature")
    var["status"] = "ok"
    var["n_missing"] = np.isnan(X[(samples["status"] == "ok").to_numpy()]).sum(0).astype(np.int64)
    obs = samples.copy()
    obs["status"] = obs["status"].astype(str)
    for c in obs.columns:
        if obs[c].dtype == object:
            obs[c] = obs[c].astype("string").fillna("NA").astype(str)
    info = provenance(kind="cohort_features", model=model_spec or model.name, model_name=model.name,
                      layers=list(layers), poolings=list(poolings), region_pool=region_pool, track_pool=track_pool,
                      encodings=encodings)
    rep = seqset.report
    info.update(case=list(rep.get("case", [])), control=list(rep.get("control", [])),
                label_column=rep.get("label_column") or "", covariates=list(rep.get("covariates", [])))
    info["embedding"] = {"share": share, "sequences": int(len(rows)), "unique_sequences": int(rows["seq_id"].nunique()),
                         "forward_sequences": int(n_forward), "seconds": float(seconds),
                         "samples_per_s": float((samples["status"] == "ok").sum() / max(seconds, 1e-9))}
    st = obs["status"].value_counts()
    info["counts"] = {"samples": int(len(obs)), "ok": int(st.get("ok", 0)),
                      "cases": int(((obs["status"] == "ok") & (obs["label"] == 1)).sum()),
                      "controls": int(((obs["status"] == "ok") & (obs["label"] == 0)).sum()),
                      "sample_status": {k: int(v) for k, v in st.items()}, "features": int(X.shape[1])}
    return ad.AnnData(X=X, obs=obs, var=var, uns={"biointerp": info})
