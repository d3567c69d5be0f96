"""Probe training with lightning, streaming batches from the activation store.

The data side is an ``IterableDataset`` over :meth:`ActivationStore.iter_batches`
(one batch plus a small shuffle buffer in memory, whatever the store size); the
model side is a ``LightningModule`` wrapping any probe (linear, covariance,
multi-head) with per-head losses that skip missing labels:

- binary: cross-entropy over 2 outputs (BCE for a 1-output linear probe);
- categorical: cross-entropy over the classes listed in the head spec;
- continuous: cross-entropy against Gaussian soft labels over the spec's bins.

Early stopping watches the validation loss; the best weights are restored at the end.

EVEE ``acts`` inputs are reduced to variant-minus-reference diffs with the probe's
``pairing``: ``"index"`` (``var_same - ref_same``, EVEE's diff; the default on stores of
the ``evee`` harvest recipe) or ``"genomic"`` (``var_same - ref_aligned``, the same
genomic base; the default on ``genomic``-recipe stores). The store's recipe and the
pairing are saved in the card (``input.recipe``, ``hparams.pairing``), and
:func:`predict` refuses a store written by another recipe than the probe was trained on
(see :mod:`biointerp.probes.covariance`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, IterableDataset

from biointerp.probes.covariance import (LAYOUTS, CovarianceBackbone, CovarianceProbe, MultiHeadCovarianceProbe,
                                         check_recipe, evee_diffs, head_prediction, resolve_pairing,
                                         soft_bin_labels)
from biointerp.probes.evaluate import auroc, binary_labels
from biointerp.probes.linear import LinearProbe, featurize, fit_linear

DEFAULT_HEAD = "pathogenicity"


class InMemorySource:
    """Tensors already in memory, with the ``iter_batches`` API of the activation store."""

    def __init__(self, variant_ids: Sequence[str], tensors: Mapping[str, torch.Tensor]):
        self.ids = [str(v) for v in variant_ids]
        self.tensors = dict(tensors)
        self._pos = {v: i for i, v in enumerate(self.ids)}

    def tensor_names(self) -> list[str]:
        return sorted(self.tensors)

    def iter_batches(self, names=None, batch_size: int = 64, variant_ids=None):
        names = list(names or self.tensors)
        rows = np.arange(len(self.ids)) if variant_ids is None else \
            np.sort([self._pos[str(v)] for v in variant_ids])
        for s in range(0, len(rows), batch_size):
            r = torch.from_numpy(rows[s:s + batch_size])
            yield [self.ids[i] for i in r.tolist()], {k: self.tensors[k][r] for k in names}


class MultiSource:
    """Several activation stores (e.g. one per shard of a pipeline) read as one."""

    def __init__(self, stores: Sequence):
        self.stores = [open_source(s) for s in stores]
        self.ids = [v for st in self.stores for v in _stored_ids(st)]
        self._owner = {v: i for i, st in enumerate(self.stores) for v in _stored_ids(st)}
        self.manifest = getattr(self.stores[0], "manifest", {})

    def tensor_names(self) -> list[str]:
        names = [set(s.tensor_names()) for s in self.stores if _stored_ids(s)]
        return sorted(set.intersection(*names)) if names else []

    def iter_batches(self, names=None, batch_size: int = 64, variant_ids=None):
        for i, st in enumerate(self.stores):
            sub = None if variant_ids is None else [v for v in variant_ids if self._owner.get(str(v)) == i]
            if sub is not None and not sub:
                continue
            yield from st.iter_batches(names, batch_size, sub)


def open_source(source):
    """Store path(s) -> opened :class:`ActivationStore` / :class:`MultiSource`; other sources as is."""
    if isinstance(source, (str, Path)):
        from biointerp.store import ActivationStore

        return ActivationStore.open(source)
    if isinstance(source, (list, tuple)):
        return open_source(source[0]) if len(source) == 1 else MultiSource(source)
    return source


def input_names(tensor: str, pair: bool, use_mask: bool) -> list[str]:
    """Store tensors to read for a probe input."""
    return [tensor] + ([tensor + ".ref"] if pair else []) + (["positions"] if use_mask else [])


def batch_input(b: Mapping[str, torch.Tensor], tensor: str, pair: bool, use_mask: bool):
    """``(x, mask)`` from a store batch: ``x`` is the tensor, or ``[N, 2, d]`` (alt, ref) when ``pair``."""
    x = torch.stack([b[tensor], b[tensor + ".ref"]], 1) if pair else b[tensor]
    return x, ((b["positions"] >= 0) if use_mask else None)


# ------------------------------------------------------------------- targets
def head_targets(labels: pd.DataFrame, heads: Mapping[str, Mapping]) -> dict[str, np.ndarray]:
    """Numeric targets per head (NaN = missing): binary 0/1, categorical class index, continuous value.

    Each head reads the label column ``spec.get("column", name)``.
    """
    out = {}
    for name, spec in heads.items():
        col = spec.get("column", name)
        if col not in labels.columns:
            raise KeyError(f"label column {col!r} for head {name!r} not found; columns: {list(labels.columns)}")
        v = labels[col]
        kind = spec.get("kind", "binary")
        if kind == "binary":
            out[name] = binary_labels(v)
        elif kind == "categorical":
            pos = {str(c): i for i, c in enumerate(spec["classes"])}
            out[name] = v.astype("string").map(pos).astype(float).to_numpy()
        elif kind == "continuous":
            out[name] = pd.to_numeric(v, errors="coerce").astype(float).to_numpy()
        else:
            raise ValueError(f"unknown head kind {kind!r}")
    return out


def infer_head_spec(values: pd.Series, kind: str = "auto", n_bins: int = 16, column: str | None = None) -> dict:
    """Head spec for a label column: binary when it maps to 0/1, continuous when numeric, else categorical."""
    spec: dict = {}
    if column:
        spec["column"] = column
    b = binary_labels(values)
    if kind == "binary" or (kind == "auto" and np.isfinite(b).sum() >= 0.5 * values.notna().sum() > 0):
        return {**spec, "kind": "binary"}
    num = pd.to_numeric(values, errors="coerce")
    if kind == "continuous" or (kind == "auto" and num.notna().mean() > 0.9 and num.nunique() > 10):
        lo, hi = float(np.nanquantile(num, 0.005)), float(np.nanquantile(num, 0.995))
        return {**spec, "kind": "continuous", "bins": np.linspace(lo, hi, n_bins + 1).tolist()}
    classes = sorted(values.dropna().astype(str).unique().tolist())
    return {**spec, "kind": "categorical", "classes": classes}


# ---------------------------------------------------------------------- data
class ProbeBatches(IterableDataset):
    """Streams ``(x, mask, {head: target})`` batches for ``ids`` from a store (path) or source.

    A shuffle buffer of ``shuffle_buffer`` batches mixes rows (re-seeded each epoch);
    ``mask`` comes from the ``positions`` tensor (``>= 0``) when ``use_mask``.
    """

    def __init__(self, source, tensor: str, ids: Sequence[str], targets: Mapping[str, np.ndarray],
                 batch_size: int = 64, shuffle_buffer: int = 0, seed: int = 0, use_mask: bool = False,
                 pair: bool = False):
        self.source, self.tensor, self.batch_size, self.pair = source, tensor, batch_size, pair
        self.ids = list(ids)
        self._row = {v: i for i, v in enumerate(self.ids)}
        self.targets = {k: torch.as_tensor(np.asarray(v, dtype=np.float32)) for k, v in targets.items()}
        self.shuffle_buffer, self.seed, self.use_mask = shuffle_buffer, seed, use_mask
        self.epoch = 0

    def _raw(self) -> Iterator[tuple[torch.Tensor, torch.Tensor | None, dict]]:
        src = open_source(self.source)
        names = input_names(self.tensor, self.pair, self.use_mask)
        for ids, b in src.iter_batches(names, self.batch_size, self.ids):
            r = torch.tensor([self._row[v] for v in ids])
            x, mask = batch_input(b, self.tensor, self.pair, self.use_mask)
            yield x, mask, {k: v[r] for k, v in self.targets.items()}

    def __iter__(self):
        if not self.shuffle_buffer:
            for x, m, t in self._raw():
                yield (x, m, t) if m is not None else (x, t)
            return
        g = torch.Generator().manual_seed(self.seed * 1000 + self.epoch)
        self.epoch += 1
        buf: list = []

        def flush(items):
            x = torch.cat([i[0] for i in items])
            m = torch.cat([i[1] for i in items]) if items[0][1] is not None else None
            t = {k: torch.cat([i[2][k] for i in items]) for k in items[0][2]}
            perm = torch.randperm(len(x), generator=g)
            for s in range(0, len(x), self.batch_size):
                p = perm[s:s + self.batch_size]
                tb = {k: v[p] for k, v in t.items()}
                yield (x[p], m[p], tb) if m is not None else (x[p], tb)

        for item in self._raw():
            buf.append(item)
            if len(buf) >= self.shuffle_buffer:
                yield from flush(buf)
                buf = []
        if buf:
            yield from flush(buf)


# --------------------------------------------------------------------- model
def _as_dict(out, heads: Mapping[str, Mapping]) -> dict[str, torch.Tensor]:
    if isinstance(out, dict):
        return out
    return {next(iter(heads)): out}


def head_loss(spec: Mapping, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor | None:
    """Loss of one head on the rows whose target is not NaN (None when there are none)."""
    ok = torch.isfinite(y)
    if not ok.any():
        return None
    logits, y = logits[ok], y[ok]
    kind = spec.get("kind", "binary")
    if kind == "binary" and logits.shape[-1] == 1:
        return F.binary_cross_entropy_with_logits(logits[:, 0], y)
    if kind in ("binary", "categorical"):
        return F.cross_entropy(logits, y.long())
    edges = torch.as_tensor(spec["bins"], dtype=logits.dtype, device=logits.device)
    soft = soft_bin_labels(y.to(logits.dtype), edges)
    return -(soft * logits.log_softmax(-1)).sum(-1).mean()


def __getattr__(name: str):
    # ProbeModule and _KeepBest live in lightning_module, imported on first use (lightning is slow to import)
    if name in ("ProbeModule", "_KeepBest"):
        from biointerp.probes import lightning_module

        return getattr(lightning_module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ----------------------------------------------------------------- training
def seed_all(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators, as ``lightning.seed_everything(seed,
    workers=True)`` does (same calls, same ``PL_*`` variables), without importing lightning."""
    os.environ["PL_GLOBAL_SEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    os.environ["PL_SEED_WORKERS"] = "1"


@dataclass
class TrainResult:
    probe: nn.Module
    heads: dict
    info: dict = field(default_factory=dict)


def data_fingerprint(ids: Sequence[str], targets: Mapping[str, np.ndarray]) -> str:
    """sha256 (16 hex) of the training ids and their targets, for the probe card."""
    h = hashlib.sha256()
    order = np.argsort(np.asarray(ids, dtype=object).astype(str))
    h.update("\n".join(np.asarray(ids, dtype=object)[order].astype(str)).encode())
    for k in sorted(targets):
        h.update(k.encode())
        h.update(np.nan_to_num(np.asarray(targets[k], dtype=np.float64)[order], nan=-9e9).tobytes())
    return h.hexdigest()[:16]


def _streamed_moments(source, tensor: str, ids, mode: str, batch_size: int, use_mask: bool, pair: bool,
                      pairing: str = "genomic"):
    src = open_source(source)
    s = ss = None
    n = 0
    for _, b in src.iter_batches(input_names(tensor, pair, use_mask), batch_size, ids):
        x, mask = batch_input(b, tensor, pair, use_mask)
        z = featurize(x, mode, mask, pairing).double()
        s = z.sum(0) if s is None else s + z.sum(0)
        ss = (z * z).sum(0) if ss is None else ss + (z * z).sum(0)
        n += len(z)
    mean = s / n
    return mean.float(), (ss / n - mean * mean).clamp_min(0).sqrt().float()


def _diff_rms(source, tensor: str, ids, batch_size: int, pair: bool, max_batches: int = 8,
              pairing: str = "genomic") -> float:
    src = open_source(source)
    tot, cnt = 0.0, 0
    for i, (_, b) in enumerate(src.iter_batches(input_names(tensor, pair, False), batch_size, ids)):
        f, r = evee_diffs(batch_input(b, tensor, pair, False)[0], pairing)
        tot += float(f.pow(2).sum() + r.pow(2).sum())
        cnt += f.numel() + r.numel()
        if i + 1 >= max_batches:
            break
    rms = (tot / max(cnt, 1)) ** 0.5
    return 1.0 / rms if rms > 0 else 1.0


def train_probe(
    source,
    labels: pd.DataFrame,
    split: pd.Series,
    kind: str = "linear",
    tensor: str = "acts",
    heads: Mapping[str, Mapping] | None = None,
    hparams: Mapping | None = None,
    probe: nn.Module | None = None,
    max_epochs: int = 50,
    batch_size: int = 64,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    patience: int = 5,
    seed: int = 0,
    method: str = "auto",
    accelerator: str = "auto",
    shuffle_buffer: int = 8,
    trainable: str = "all",
    pair: bool | None = None,
    pairing: str | None = None,
    progress: bool = False,
) -> TrainResult:
    """Train (or continue training) a probe on store tensors.

    Parameters
    ----------
    source
        Activation store path(s) (streamed, bounded memory) or an :class:`InMemorySource`.
    labels
        Indexed by ``variant_id``; one column per head (``spec["column"]`` or the head name).
    split
        ``"train" | "val" | "test"`` per ``variant_id`` (see :mod:`biointerp.probes.splits`).
        Test rows are never read here.
    kind
        ``linear``, ``covariance`` (one binary head), ``covariance_concat`` or ``covariance_multihead``.
    tensor
        Store tensor: ``acts`` (EVEE view), ``diff`` (``evee_diff`` view) or ``emb.<layer>.<pooling>``.
    heads
        ``{name: spec}`` (see :class:`MultiHeadCovarianceProbe`); default one binary head
        ``pathogenicity`` reading the ``label`` column.
    hparams
        Probe sizes: linear ``l2``, ``features``; covariance ``h``, ``p``, ``eps``, ``n_sqrt_iter``,
        ``root`` (``newton_schulz`` default, ``sym_eigh``, ``gram_eigh``: see :mod:`~biointerp.probes.covariance`).
    probe
        An existing probe to fine-tune (its weights are the starting point).
    method
        Linear probes only: ``lbfgs`` (features of the training rows in memory, exact),
        ``minibatch`` (streamed, lightning) or ``auto`` (L-BFGS under 2^27 feature values).
    trainable
        ``all`` or ``heads`` (freeze the covariance projections when fine-tuning).
    pair
        Read ``<tensor>.ref`` too and give the probe ``[N, 2, d]`` (alt, ref); default: when
        ``tensor`` is a pooled embedding whose ``.ref`` is stored.
    pairing
        EVEE views only: ``"index"`` (``var_same - ref_same``, the same sequence index, EVEE's
        diff) or ``"genomic"`` (``var_same - ref_aligned``, the same genomic base; genomic-recipe
        stores only). Default: the fine-tuned ``probe``'s own pairing, else the store recipe's
        (evee: index, genomic: genomic). Combinations a store cannot give raise ValueError
        (:func:`~biointerp.probes.covariance.resolve_pairing`). Saved in the probe's hparams.

    Returns
    -------
    :class:`TrainResult` with the trained probe (best validation weights, eval mode),
    the head specs and ``info`` (n_train, n_val, epochs, best_val_loss, history,
    data_fingerprint, input {tensor, pair[, pairing, recipe, layout]}; the last three for EVEE
    views).
    """
    seed_all(seed)
    hp = dict(hparams or {})
    heads = dict(heads or {DEFAULT_HEAD: {"kind": "binary", "column": "label"}})
    src = open_source(source)
    store_ids = set(_stored_ids(src))
    labels = labels.copy()
    labels.index = labels.index.astype(str)
    targets_all = head_targets(labels, heads)
    has_target = np.zeros(len(labels), dtype=bool)
    for v in targets_all.values():
        has_target |= np.isfinite(v)
    sp = split.reindex(labels.index).astype(str).to_numpy()
    in_store = labels.index.isin(list(store_ids))
    sel = {s: np.flatnonzero(has_target & in_store & (sp == s)) for s in ("train", "val")}
    if len(sel["train"]) == 0:
        raise ValueError(f"no training rows: of {len(labels)} labelled variants, {int(in_store.sum())} are in the "
                         f"store, {int(has_target.sum())} have a usable label, "
                         f"{int((sp == 'train').sum())} are in the 'train' split")
    ids = {s: labels.index[r].tolist() for s, r in sel.items()}
    tg = {s: {k: v[r] for k, v in targets_all.items()} for s, r in sel.items()}
    names = _tensor_names(src)
    if tensor not in names:
        raise KeyError(f"tensor {tensor!r} not in the store (has {names})")
    if pair is None:
        pair = tensor.startswith("emb.") and (tensor + ".ref") in names and hp.get("features") != "pooled"
    use_mask = tensor in ("acts", "diff") and "positions" in names
    recipe = source_recipe(src) if tensor in ("acts", "diff") else None
    if probe is not None:
        check_recipe(getattr(probe, "input_recipe", None), recipe)
    pairing = _resolve_pairing(pairing if pairing is not None else hp.get("pairing"), probe, recipe, tensor)
    x0 = _first_input(src, tensor, ids["train"], pair)
    _check_pairing_input(x0, tensor, pairing, recipe)
    inp = {"tensor": tensor, "pair": bool(pair)}
    if x0.dim() >= 4:  # EVEE view (acts or diff): record the harvest recipe and how var and ref were paired
        inp["pairing"] = pairing
        inp["recipe"] = recipe
    info = {"n_train": len(ids["train"]), "n_val": len(ids["val"]), "seed": seed,
            "n_labelled_without_activations": int((has_target & ~in_store).sum()),
            "input": inp,
            "data_fingerprint": data_fingerprint(ids["train"] + ids["val"],
                                                 {k: np.r_[tg["train"][k], tg["val"][k]] for k in heads})}

    if probe is None:
        probe = _new_probe(kind, heads, hp, src, tensor, ids["train"], batch_size, use_mask, pair, x0, pairing)
        if isinstance(probe, CovarianceBackbone) and "input_scale" not in hp:
            probe.input_scale = _diff_rms(src, tensor, ids["train"], batch_size, pair, pairing=pairing)
    if x0.dim() >= 4:
        probe.input_recipe = recipe
        inp["layout"] = LAYOUTS[bool(probe.concat)] if isinstance(probe, CovarianceBackbone) else \
            f"linear:{getattr(probe, 'features', '')}"
    if isinstance(probe, LinearProbe):
        if len(heads) != 1:
            raise ValueError("a linear probe has one head; use covariance_multihead for several labels")
        n_feat = len(ids["train"]) * probe.d
        if method == "lbfgs" or (method == "auto" and n_feat <= 2 ** 27):
            return _fit_linear_lbfgs(probe, src, tensor, ids, tg, heads, batch_size, use_mask, pair, info)
    import lightning as L  # the trainer only: seconds to import

    from biointerp.probes.lightning_module import ProbeModule, _KeepBest

    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    module = ProbeModule(probe, heads, lr, weight_decay, trainable)
    train_dl = DataLoader(ProbeBatches(src, tensor, ids["train"], tg["train"], batch_size,
                                       shuffle_buffer, seed, use_mask, pair), batch_size=None)
    has_val = len(ids["val"]) > 0
    val_dl = DataLoader(ProbeBatches(src, tensor, ids["val"], tg["val"], batch_size, 0, seed, use_mask, pair),
                        batch_size=None) if has_val else None
    keep = _KeepBest()
    callbacks = [keep]
    if has_val:
        callbacks.append(L.pytorch.callbacks.EarlyStopping("val_loss", patience=patience, mode="min"))
    trainer = L.Trainer(max_epochs=max_epochs, accelerator=accelerator, devices=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=progress, enable_model_summary=False,
                        callbacks=callbacks, deterministic=True, num_sanity_val_steps=0,
                        limit_val_batches=1.0 if has_val else 0)
    trainer.fit(module, train_dl, val_dl)
    hist = module.history
    info.update({"method": "lightning", "epochs": len(hist) if has_val else int(trainer.current_epoch),
                 "best_epoch": keep.epoch, "best_val_loss": keep.best if has_val else None,
                 "val_auroc": next((h.get("val_auroc") for h in hist if h["epoch"] == keep.epoch), None),
                 "history": hist})
    return TrainResult(probe.cpu().eval(), heads, info)


def _stored_ids(src) -> list[str]:
    if hasattr(src, "index") and isinstance(getattr(src, "index"), pd.DataFrame):
        idx = src.index
        return idx.loc[idx["shard"] >= 0, "variant_id"].astype(str).tolist()
    return list(src.ids)


def _tensor_names(src) -> list[str]:
    return list(src.tensor_names())


def source_recipe(src) -> str | None:
    """Harvest recipe of a store (or of several, which must agree); None for tensors in memory."""
    from biointerp.store import store_recipe

    mans = [getattr(s, "manifest", None) for s in getattr(src, "stores", [src])]
    recipes = {store_recipe(m) for m in mans if m}
    if len(recipes) > 1:
        raise ValueError(f"the stores were written by different harvest recipes ({sorted(map(str, recipes))}); "
                         "train or apply a probe on stores of one recipe")
    return recipes.pop() if recipes else None


def _resolve_pairing(pairing: str | None, probe: nn.Module | None, recipe: str | None = None,
                     tensor: str = "acts") -> str:
    """The pairing to train with: the argument, else the fine-tuned probe's, else the recipe's."""
    own = getattr(probe, "pairing", None) if probe is not None else None
    if pairing is not None and own is not None and own != pairing:
        raise ValueError(f"the probe to fine-tune was trained with pairing={own!r}; cannot continue it with "
                         f"pairing={pairing!r}")
    if tensor not in ("acts", "diff"):
        return resolve_pairing(None, pairing or own)
    return resolve_pairing(recipe, pairing or own, tensor)


def _check_pairing_input(x0: torch.Tensor, tensor: str, pairing: str, recipe: str | None = None) -> None:
    """ValueError when ``pairing="index"`` cannot be computed from ``tensor`` (``x0``: its first rows)."""
    if pairing != "index":
        return
    if x0.dim() == 4 and recipe is None:
        raise ValueError("pairing='index' on diff tensors [N,2,K,d] of unknown recipe: only a store's manifest "
                         "says which diff they hold (evee recipe: var_same - ref_same); read them from the store")
    if x0.dim() not in (4, 5):
        raise ValueError(f"pairing='index' (var_same - ref_same) needs the EVEE view acts [N,2,3,K,d]; tensor "
                         f"{tensor!r} has shape {tuple(x0.shape[1:])} per variant (harvest with --view evee, or "
                         "leave pairing='genomic')")


def _first_input(src, tensor: str, ids, pair: bool) -> torch.Tensor:
    for _, b in src.iter_batches(input_names(tensor, pair, False), 2, ids[:2]):
        return batch_input(b, tensor, pair, False)[0]
    raise ValueError("empty training set")


def _new_probe(kind: str, heads: dict, hp: dict, src, tensor: str, train_ids, batch_size: int,
               use_mask: bool, pair: bool, x0: torch.Tensor, pairing: str = "genomic") -> nn.Module:
    if kind == "linear":
        mode = hp.get("features") or ("evee_mean_diff" if x0.dim() >= 4 else "pooled_pair" if pair else "pooled")
        d = featurize(x0, mode, pairing=pairing).shape[1]
        spec = next(iter(heads.values()))
        if spec.get("kind") == "continuous":
            raise ValueError("linear probes take binary or categorical labels; use covariance_multihead "
                             "for continuous labels")
        n_out = 1 if spec.get("kind", "binary") == "binary" else len(spec.get("classes", []))
        probe = LinearProbe(d, n_out, mode, hp.get("l2", 1e-3), pairing)
        probe.set_standardisation(*_streamed_moments(src, tensor, train_ids, mode, batch_size, use_mask, pair,
                                                     pairing))
        return probe
    if x0.dim() < 4 and not pair:
        raise ValueError(f"covariance probes need the EVEE view (acts [N,2,3,K,d] or diff [N,2,K,d]) or a pooled "
                         f"pair with its .ref; tensor {tensor!r} has shape {tuple(x0.shape[1:])} per variant "
                         "(harvest with --view evee or evee_diff)")
    d = x0.shape[-1]
    concat = kind == "covariance_concat" or (kind == "covariance_multihead" and hp.get("concat", False))
    common = dict(h=hp.get("h", 64), p=hp.get("p", 256 if concat else 128), eps=hp.get("eps", 1e-3),
                  n_sqrt_iter=hp.get("n_sqrt_iter", 3), input_scale=hp.get("input_scale", 1.0), pairing=pairing,
                  root=hp.get("root", "newton_schulz"))
    if kind in ("covariance", "covariance_concat") and len(heads) == 1 \
            and next(iter(heads.values())).get("kind", "binary") == "binary":
        return CovarianceProbe(d, n_out=2, concat=kind == "covariance_concat", **common)
    if kind.startswith("covariance"):
        return MultiHeadCovarianceProbe(d, heads, concat=kind.endswith("concat") or hp.get("concat", False),
                                        **common)
    raise ValueError(f"unknown probe kind {kind!r}; use linear, covariance, covariance_concat or "
                     "covariance_multihead")


def _fit_linear_lbfgs(probe: LinearProbe, src, tensor, ids, tg, heads, batch_size, use_mask, pair,
                      info) -> TrainResult:
    name = next(iter(heads))
    feats, ys = [], []
    row = {v: i for i, v in enumerate(ids["train"])}
    for b_ids, b in src.iter_batches(input_names(tensor, pair, use_mask), max(batch_size, 256), ids["train"]):
        x, mask = batch_input(b, tensor, pair, use_mask)
        feats.append(featurize(x, probe.features, mask, probe.pairing))
        ys.append(tg["train"][name][[row[v] for v in b_ids]])
    Z, y = torch.cat(feats), np.concatenate(ys)
    fitted = fit_linear(Z, y.astype(np.int64), l2=probe.l2, features="pooled", method="lbfgs")
    probe.load_state_dict(fitted.state_dict())
    info.update({"method": "lbfgs", "epochs": None})
    if ids["val"]:
        p = predict(probe, src, tensor, ids["val"], heads, batch_size, pair=pair)
        yv = tg["val"][name]
        info["val_auroc"] = auroc(yv[np.isfinite(yv)], p[name].to_numpy()[np.isfinite(yv)])
    return TrainResult(probe.eval(), heads, info)


@torch.no_grad()
def predict(probe: nn.Module, source, tensor: str, ids: Sequence[str] | None, heads: Mapping[str, Mapping],
            batch_size: int = 64, device: str | torch.device = "cpu", pair: bool = False,
            progress: bool = False) -> pd.DataFrame:
    """Stream ``ids`` (all stored when None) through ``probe``: one score column per head.

    Binary heads give P(positive), continuous the expected value, categorical the class index.
    EVEE ``acts`` are paired as the probe was trained (its ``pairing`` hyper-parameter, read
    from the card by :func:`~biointerp.probes.artifact.load_probe`); a store written by
    another harvest recipe than the probe's (``probe.input_recipe``) raises ValueError.
    Returns a DataFrame indexed by ``variant_id`` in the order given (store order when None).
    """
    src = open_source(source)
    if tensor in ("acts", "diff"):
        recipe = source_recipe(src)
        check_recipe(getattr(probe, "input_recipe", None), recipe)
        if hasattr(probe, "pairing"):
            resolve_pairing(recipe, probe.pairing, tensor)
    probe = probe.to(device).eval()
    use_mask = tensor in ("acts", "diff") and "positions" in _tensor_names(src)
    out_ids, cols = [], {k: [] for k in heads}
    batches = src.iter_batches(input_names(tensor, pair, use_mask), batch_size, ids)
    if progress:
        from tqdm.auto import tqdm

        n = len(ids) if ids is not None else len(_stored_ids(src))
        batches = tqdm(batches, total=-(-n // batch_size), desc="probe", unit="batch")
    for b_ids, b in batches:
        x, mask = batch_input(b, tensor, pair, use_mask)
        out = _as_dict(probe(x.to(device), None if mask is None else mask.to(device)), heads)
        for k, spec in heads.items():
            cols[k].append(head_prediction(spec, out[k]).float().cpu())
        out_ids.extend(b_ids)
    df = pd.DataFrame({k: torch.cat(v).numpy() if v else np.zeros(0) for k, v in cols.items()},
                      index=pd.Index(out_ids, name="variant_id"))
    return df.reindex([str(i) for i in ids]) if ids is not None else df
