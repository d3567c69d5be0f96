"""Probe artifacts: one ``.safetensors`` file, tensors + a JSON card in the metadata.

The card (``metadata["biointerp_card"]``) holds: ``kind``, ``model``, ``layer``,
``views``, ``pooling``/``features``, ``d``, ``hparams``, ``data_fingerprint``,
``split``, ``metrics``, ``calibration``, ``heads``. No pickle anywhere.

EVEE-view probes record the harvest ``recipe`` of their training store
(``input.recipe``: ``"evee"`` or ``"genomic"``), their ``pairing`` (``"index"``:
var_same - ref_same, or ``"genomic"``: var_same - ref_aligned; see
:mod:`biointerp.probes.covariance`) in ``hparams`` and ``input``, and their input
``layout`` (``per_direction`` or ``unified_diff``); :func:`load_probe` rebuilds the
module with them (``module.input_recipe``), so a loaded probe pairs the views as in
training and refuses a store of another recipe. biointerp cards written before
recipes existed were trained on genomic-recipe stores and load as recipe
``"genomic"``, pairing ``"genomic"`` (:func:`card_recipe`); EVEE's own files
(no card) load as recipe ``"evee"``, pairing ``"index"`` (EVEE's ``unified_diff``).

:func:`load_probe` also reads an EVEE-style ``probe.safetensors`` without a card
(``kind="covariance"``, ``d_model=4096``), accepting both module-style keys
(``proj_left_fwd.weight``) and flat keys (``proj_left_fwd``, ``proj_left_fwd_bias``,
``out_weight``, ``eye``), and multi-head files (``head_modules.<name>.*``).

Integrity: :func:`save_probe` records every tensor's dtype and shape (``tensors``) and a
sha256 of their contents (``tensors_sha256``) in the card; :func:`load_probe` checks
the hash, the dtypes (floating point only), the shapes (against the card and the
module the card describes) and that every value is finite, and raises
:class:`ProbeFileError` (a ``ValueError``) naming the file and what to do otherwise.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from biointerp.probes.covariance import CovarianceProbe, MultiHeadCovarianceProbe
from biointerp.probes.linear import LinearProbe

CARD_KEY = "biointerp_card"
KINDS = ("linear", "covariance", "covariance_multihead")
_DAMAGED = "the probe file is damaged: copy or download it again, or retrain it with `biointerp probe train`"


class ProbeFileError(ValueError):
    """A probe file is unreadable, damaged, or its tensors disagree with its card."""


def tensors_sha256(tensors: Mapping[str, torch.Tensor]) -> str:
    """sha256 over the tensors' names, dtypes, shapes and bytes (in name order)."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(json.dumps([name, str(t.dtype).replace("torch.", ""), list(t.shape)]).encode())
        h.update(memoryview(t.reshape(-1).view(torch.uint8).numpy()))
    return h.hexdigest()


def tensor_layout(tensors: Mapping[str, torch.Tensor]) -> dict[str, dict]:
    """``{name: {"dtype": "float32", "shape": [...]}}`` as recorded in the card."""
    return {k: {"dtype": str(v.dtype).replace("torch.", ""), "shape": list(v.shape)} for k, v in sorted(tensors.items())}


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
    card["tensors"] = tensor_layout(tensors)
    card["tensors_sha256"] = tensors_sha256(tensors)
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
    """The JSON card of a probe file (None when the file has none).

    Raises :class:`ProbeFileError` when the file is not a readable safetensors file
    or the card is not a JSON object.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"probe file not found: {path}")
    if path.stat().st_size == 0:
        raise ProbeFileError(f"{path}: empty file (0 bytes); {_DAMAGED}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as err:  # noqa: BLE001 - safetensors raises its own error types
        raise ProbeFileError(f"{path}: not a readable safetensors file ({err}); {_DAMAGED}") from err
    if CARD_KEY not in meta:
        return None
    try:
        card = json.loads(meta[CARD_KEY])
    except ValueError as err:
        raise ProbeFileError(f"{path}: the probe card is not valid JSON ({err}); {_DAMAGED}") from err
    if not isinstance(card, dict):
        raise ProbeFileError(f"{path}: the probe card is a JSON {type(card).__name__}, not an object; {_DAMAGED}")
    return card


def check_tensors(path, sd: Mapping[str, torch.Tensor], card: dict | None) -> None:
    """Check a probe's tensors against its card: content hash, dtypes, shapes, finite values."""
    want = (card or {}).get("tensors_sha256")
    if want is not None and tensors_sha256(sd) != want:
        raise ProbeFileError(f"{path}: tensor contents do not match the checksum in the card; {_DAMAGED}")
    layout = (card or {}).get("tensors")
    if isinstance(layout, dict):
        got = tensor_layout(sd)
        for k in sorted(set(layout) | set(got)):
            if layout.get(k) != got.get(k):
                raise ProbeFileError(f"{path}: tensor {k!r} is {got.get(k) or 'missing'} but the card records "
                                     f"{layout.get(k) or 'no such tensor'}; {_DAMAGED}")
    for k, t in sd.items():
        if not t.is_floating_point():
            raise ProbeFileError(f"{path}: tensor {k!r} is {str(t.dtype).replace('torch.', '')}; probe weights "
                                 f"must be floating point (float32, float16 or bfloat16); {_DAMAGED}")
        if not bool(torch.isfinite(t).all()):
            raise ProbeFileError(f"{path}: tensor {k!r} holds NaN or infinite values; {_DAMAGED}")


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


def card_recipe(card: dict | None) -> str | None:
    """The harvest recipe a probe card records (``input.recipe``). Cards of EVEE-view
    probes (tensor ``acts``/``diff``) without one predate recipes: ``"genomic"``. EVEE's
    own files (loaded without a card): ``"evee"``. Pooled-embedding probes: None."""
    card = card or {}
    inp = card.get("input") or {}
    if inp.get("recipe"):
        return str(inp["recipe"])
    if card.get("card") == "inferred from tensor shapes" and str(card.get("kind", "")).startswith("covariance"):
        return "evee"
    if inp.get("tensor") in ("acts", "diff"):
        return "genomic"
    return None


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
    ``input.pairing``, else ``"genomic"`` (``"index"`` for card-less EVEE files); its
    ``input_recipe`` is :func:`card_recipe`. The tensors are checked (:func:`check_tensors`:
    card checksum, dtypes, shapes, finite values) before they reach the module; any
    problem raises :class:`ProbeFileError` naming the file.
    """
    path = Path(path)
    card = read_card(path)  # checks that the file exists and is readable
    from safetensors.torch import load_file

    try:
        sd = load_file(str(path), device="cpu")
    except Exception as err:  # noqa: BLE001 - safetensors raises its own error types
        raise ProbeFileError(f"{path}: tensors cannot be read ({err}); {_DAMAGED}") from err
    check_tensors(path, sd, card)
    if card is None:
        if kind is None:
            raise ProbeFileError(f"{path} has no biointerp card; to load an EVEE-style probe pass kind='covariance' "
                                 "and d_model (CLI: --kind covariance --d-model 4096), or kind='linear'")
        sd = _normalise_evee_keys(sd)
        try:
            if kind.startswith("covariance"):
                kind, hp = _infer_covariance(sd, d_model)
            elif kind == "linear":
                n_out, d = sd["linear.weight"].shape
                hp = {"d": d, "n_out": n_out}
            else:
                raise ValueError(f"unknown probe kind {kind!r}; use one of {KINDS}")
        except (KeyError, ValueError) as err:
            raise ProbeFileError(f"{path}: not a {kind} probe file ({err})") from err
        if kind.startswith("covariance"):  # EVEE's trainer: unified_diff = var_same - ref_same
            hp["pairing"] = "index"
        card = {"kind": kind, "hparams": hp, "d": hp["d"], "source": str(path), "card": "inferred from tensor shapes",
                "input": {"recipe": "evee" if kind.startswith("covariance") else None}}
    if card.get("kind") not in KINDS or not isinstance(card.get("hparams"), dict):
        raise ProbeFileError(f"{path}: the card names no known probe (kind {card.get('kind')!r}, hparams "
                             f"{type(card.get('hparams')).__name__}); kinds are {', '.join(KINDS)}; {_DAMAGED}")
    try:
        module = build_probe(card["kind"], _hparams_with_pairing(card, path))
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise ProbeFileError(f"{path}: the card's hparams do not describe a {card['kind']} probe ({err!r}); "
                             f"{_DAMAGED}") from err
    module.input_recipe = card_recipe(card)
    if "_eye" not in sd and hasattr(module, "_eye"):
        sd["_eye"] = module._eye.clone()
    own = module.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    if missing or unexpected:
        raise ProbeFileError(f"{path}: tensors do not match a {card['kind']} probe "
                             f"(missing {missing[:6]}, unexpected {unexpected[:6]})")
    for k, t in own.items():
        if tuple(sd[k].shape) != tuple(t.shape):
            raise ProbeFileError(f"{path}: tensor {k!r} has shape {list(sd[k].shape)}, but a {card['kind']} probe "
                                 f"with d={card['hparams'].get('d')} needs {list(t.shape)}; {_DAMAGED}")
    module.load_state_dict(sd, strict=True)
    return module.to(device).eval(), card
