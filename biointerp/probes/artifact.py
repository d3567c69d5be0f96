"""Probe artifacts: one ``.safetensors`` file, tensors + a JSON card in the metadata.

The card (``metadata["biointerp_card"]``) holds: ``kind``, ``model``, ``layer``,
``views``, ``pooling``/``features``, ``d``, ``hparams``, ``data_fingerprint``,
``split``, ``metrics``, ``calibration``, ``heads``. No pickle anywhere.

EVEE-view probes record their ``pairing`` (``"genomic"``: var_same - ref_cross, or
``"index"``: var_same - ref_same; see :func:`biointerp.probes.covariance.evee_diffs`) in
``hparams`` and ``input``; :func:`load_probe` rebuilds the module with it, so a loaded
probe pairs the views as in training. Cards without it (older files, EVEE files) load
as ``"genomic"``.

:func:`load_probe` also reads an EVEE-style ``probe.safetensors`` without a card
(``kind="covariance"``, ``d_model=4096``), accepting both module-style keys
(``proj_left_fwd.weight``) and flat keys (``proj_left_fwd``, ``proj_left_fwd_bias``,
``out_weight``, ``eye``), and multi-head files (``head_modules.<name>.*``).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from biointerp.probes.covariance import CovarianceProbe, MultiHeadCovarianceProbe
from biointerp.probes.linear import LinearProbe

CARD_KEY = "biointerp_card"
KINDS = ("linear", "covariance", "covariance_multihead")


def build_probe(kind: str, hparams: dict) -> nn.Module:
    """Instantiate a probe of ``kind`` from its ``hparams`` (as stored in a card; ``pairing``
    defaults to ``"genomic"``)."""
    hp = dict(hparams)
    pairing = hp.get("pairing") or "genomic"
    if kind == "linear":
        return LinearProbe(hp["d"], hp.get("n_out", 1), hp.get("features", "pooled"), hp.get("l2", 1e-3), pairing)
    if kind == "covariance":
        return CovarianceProbe(hp["d"], hp.get("h", 64), hp.get("p", 128), hp.get("n_out", 2), hp.get("eps", 1e-3),
                               hp.get("n_sqrt_iter", 3), hp.get("concat", False), hp.get("input_scale", 1.0),
                               pairing, hp.get("root", "newton_schulz"))
    if kind == "covariance_multihead":
        return MultiHeadCovarianceProbe(hp["d"], hp["heads"], hp.get("h", 64), hp.get("p", 128), hp.get("eps", 1e-3),
                                        hp.get("n_sqrt_iter", 3), hp.get("concat", False),
                                        hp.get("input_scale", 1.0), pairing, hp.get("root", "newton_schulz"))
    raise ValueError(f"unknown probe kind {kind!r}; use one of {KINDS}")


def save_probe(path: str | Path, module: nn.Module, card: dict) -> Path:
    """Write ``module``'s state dict and ``card`` (JSON in the metadata) atomically.

    ``card`` gets ``kind`` and ``hparams`` from the module when missing, plus ``created``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    card = dict(card)
    card.setdefault("kind", getattr(module, "kind", type(module).__name__))
    card.setdefault("hparams", module.hparams() if hasattr(module, "hparams") else {})
    card.setdefault("d", card["hparams"].get("d"))
    card.setdefault("format", "biointerp-probe/1")
    card.setdefault("created", _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    tensors = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={CARD_KEY: json.dumps(card, default=_json_default)})
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


def _json_default(o):
    if hasattr(o, "tolist"):
        return o.tolist()
    return str(o)


def read_card(path: str | Path) -> dict | None:
    """The JSON card of a probe file (None when the file has none)."""
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    return json.loads(meta[CARD_KEY]) if CARD_KEY in meta else None


def _normalise_evee_keys(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map flat EVEE names (``proj_left_fwd``, ``proj_left_fwd_bias``, ``head_left``,
    ``out_weight``, ``eye``) onto module state-dict names."""
    out = {}
    for k, v in sd.items():
        if k in ("eye", "_eye"):
            out["_eye"] = v
        elif k.endswith("_bias") and not k.endswith(".bias"):
            out[k[: -len("_bias")] + ".bias"] = v
        elif k.endswith("_weight") and not k.endswith(".weight"):
            out[k[: -len("_weight")] + ".weight"] = v
        elif "." not in k:
            out[k + ".weight"] = v
        else:
            out[k] = v
    return out


def _infer_covariance(sd: dict[str, torch.Tensor], d_model: int | None) -> tuple[str, dict]:
    concat = "proj_left.weight" in sd
    w = sd["proj_left.weight" if concat else "proj_left_fwd.weight"]
    h, d_in = w.shape
    d = d_in // 2 if concat else d_in
    if d_model is not None and d != d_model:
        raise ValueError(f"probe projections take d={d}, but --d-model {d_model} was given")
    heads = sorted({k.split(".")[1] for k in sd if k.startswith("head_modules.")})
    if heads:
        p = sd[f"head_modules.{heads[0]}.head_left.weight"].shape[0]
        specs = {}
        for name in heads:
            n = sd[f"head_modules.{name}.out.weight"].shape[0]
            specs[name] = {"kind": "binary"} if n == 2 else {"kind": "categorical", "classes": list(range(n))}
        return "covariance_multihead", {"d": d, "h": h, "p": p, "concat": concat, "heads": specs}
    p = sd["head_left.weight"].shape[0]
    return "covariance", {"d": d, "h": h, "p": p, "n_out": sd["out.weight"].shape[0], "concat": concat}


def card_pairing(card: dict | None) -> str:
    """The EVEE pairing a probe card records (``hparams.pairing``, else ``input.pairing``),
    ``"genomic"`` when it records none (older cards, EVEE files)."""
    card = card or {}
    return (card.get("hparams") or {}).get("pairing") or (card.get("input") or {}).get("pairing") or "genomic"


def _hparams_with_pairing(card: dict, path) -> dict:
    hp = dict(card["hparams"])
    a, b = hp.get("pairing"), (card.get("input") or {}).get("pairing")
    if a and b and a != b:
        raise ValueError(f"{path}: the card records two pairings (hparams {a!r}, input {b!r})")
    hp["pairing"] = card_pairing(card)
    return hp


def load_probe(path: str | Path, kind: str | None = None, d_model: int | None = None,
               device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Load a probe file -> ``(module in eval mode, card)``.

    With a card the module is rebuilt from it. Without one (e.g. EVEE's
    ``probe.safetensors``) pass ``kind="covariance"`` (and optionally ``d_model``
    to check the projection width); shapes are read from the tensors and the
    DESIGN.md defaults (eps=1e-3, 3 Newton-Schulz steps) are used. Loading is strict.
    The module's ``pairing`` (EVEE views) is the card's ``hparams.pairing``, else its
    ``input.pairing``, else ``"genomic"``.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"probe file not found: {path}")
    from safetensors.torch import load_file

    sd = load_file(str(path), device=str(device))
    card = read_card(path)
    if card is None:
        if kind is None:
            raise ValueError(f"{path} has no biointerp card; to load an EVEE-style probe pass kind='covariance' "
                             "and d_model (CLI: --kind covariance --d-model 4096), or kind='linear'")
        sd = _normalise_evee_keys(sd)
        if kind.startswith("covariance"):
            kind, hp = _infer_covariance(sd, d_model)
        elif kind == "linear":
            n_out, d = sd["linear.weight"].shape
            hp = {"d": d, "n_out": n_out}
        else:
            raise ValueError(f"unknown probe kind {kind!r}; use one of {KINDS}")
        card = {"kind": kind, "hparams": hp, "d": hp["d"], "source": str(path), "card": "inferred from tensor shapes"}
    module = build_probe(card["kind"], _hparams_with_pairing(card, path))
    if "_eye" not in sd and hasattr(module, "_eye"):
        sd["_eye"] = module._eye.clone()
    missing, unexpected = module.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise ValueError(f"{path}: tensors do not match a {card['kind']} probe "
                         f"(missing {missing[:6]}, unexpected {unexpected[:6]})")
    return module.to(device).eval(), card
