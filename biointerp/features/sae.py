"""Sparse autoencoders: batch-top-k and top-k, tied and untied, and their artifacts.

The layout follows the Evo 2 SAE released with the Evo 2 paper (Arc Institute's
``evo2`` repository, ``notebooks/sparse_autoencoder``): a weight ``W [d_in,
d_hidden]`` shared by encoder and decoder (tied), an encoder bias ``b_enc
[d_hidden]`` and a decoder bias ``b_dec [d_in]``::

    encode(x) = select(relu(x @ W + b_enc))
    decode(f) = f @ W.T + b_dec

``select`` keeps, per token, the ``k`` largest values (``topk``) or, over the
flattened batch, the ``k × n_tokens`` largest values (``batch_topk``). An untied
SAE has its own decoder ``W_dec [d_hidden, d_in]``. ``input_scale [d_in]`` (a
buffer, all ones for the published file) multiplies inputs before encoding and
divides reconstructions after decoding, so training can work at unit scale.

Artifacts are one ``.safetensors`` file (tensors + the JSON card in its
metadata header) and the same card beside it as ``<name>.json``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

KINDS = ("batch_topk", "topk")
PUBLISHED_PREFIXES = ("_orig_mod.", "module.")


class SAEError(ValueError):
    """A malformed SAE file or an incompatible request."""


class SparseAutoencoder(nn.Module):
    """A k-sparse autoencoder on ``d_in``-dimensional activations.

    Parameters: ``d_in``, ``d_hidden`` (latents), ``k`` (active latents per
    token on average), ``kind`` (``batch_topk`` | ``topk``), ``tied`` (decoder =
    encoder transposed), ``rank_ramp`` (a tiny increasing ramp over latent ids
    added to the *ranking* only, so ties are broken in latent order; values are
    left untouched; 0 = off)."""

    def __init__(self, d_in: int, d_hidden: int, k: int, kind: str = "batch_topk", tied: bool = True,
                 rank_ramp: float = 0.0, seed: int | None = 0) -> None:
        super().__init__()
        if kind not in KINDS:
            raise SAEError(f"kind must be one of {KINDS}, got {kind!r}")
        if not 0 < k <= d_hidden:
            raise SAEError(f"k must lie in [1, d_hidden={d_hidden}], got {k}")
        self.d_in, self.d_hidden, self.k, self.kind, self.tied = int(d_in), int(d_hidden), int(k), kind, bool(tied)
        self.rank_ramp = float(rank_ramp)
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        w = torch.randn(d_in, d_hidden, generator=gen)
        w = 0.1 * w / w.norm(dim=0, keepdim=True)
        self.W = nn.Parameter(w)
        self.b_enc = nn.Parameter(torch.zeros(d_hidden))
        self.b_dec = nn.Parameter(torch.zeros(d_in))
        if not tied:
            self.W_dec = nn.Parameter(w.T.clone())
        self.register_buffer("input_scale", torch.ones(d_in))

    # ------------------------------------------------------------------ the maps
    @property
    def decoder(self) -> Tensor:
        """Decoder matrix ``[d_hidden, d_in]`` (``W.T`` when tied)."""
        return self.W.T if self.tied else self.W_dec

    def pre_acts(self, x: Tensor) -> Tensor:
        """``relu(x·scale @ W + b_enc)`` before selection, shape ``[..., d_hidden]``."""
        x = x.to(self.W.dtype) * self.input_scale.to(self.W.dtype)
        return torch.relu(x @ self.W + self.b_enc)

    def select(self, f: Tensor, kind: str | None = None) -> Tensor:
        """Keep the top-k values per token (``topk``) or over the flattened batch (``batch_topk``)."""
        kind = kind or self.kind
        rank = f
        if self.rank_ramp:
            rank = f + torch.linspace(0, self.rank_ramp, f.shape[-1], device=f.device, dtype=f.dtype)
        if kind == "topk":
            idx = rank.topk(self.k, dim=-1).indices
            return torch.zeros_like(f).scatter(-1, idx, f.gather(-1, idx))
        flat, rflat = f.reshape(-1), rank.reshape(-1)
        n = min(self.k * (f.numel() // f.shape[-1]), flat.numel())
        idx = rflat.topk(n).indices
        return torch.zeros_like(flat).scatter(0, idx, flat[idx]).reshape(f.shape)

    def encode(self, x: Tensor, kind: str | None = None) -> Tensor:
        """Sparse latent activations ``[..., d_hidden]`` of activations ``x [..., d_in]``."""
        return self.select(self.pre_acts(x), kind)

    def decode(self, f: Tensor) -> Tensor:
        """Reconstruction ``[..., d_in]`` (in the input's scale) of latents ``f``."""
        return (f @ self.decoder + self.b_dec) / self.input_scale.to(self.W.dtype)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(reconstruction, latents)``."""
        f = self.encode(x)
        return self.decode(f), f

    def direction(self, latent: int) -> Tensor:
        """Latent ``latent``'s decoder direction in the input's scale, ``[d_in]``."""
        return self.decoder[latent] / self.input_scale.to(self.W.dtype)

    def card(self, **extra: Any) -> dict:
        """A JSON-able description (shape, kind, k, tied, scale) plus ``extra`` fields."""
        return {"format": "biointerp.sae/1", "d_in": self.d_in, "d_hidden": self.d_hidden, "k": self.k,
                "kind": self.kind, "tied": self.tied, "rank_ramp": self.rank_ramp,
                "input_scale_mean": float(self.input_scale.mean()), **extra}


# --------------------------------------------------------------------------- artifacts
def save_sae(sae: SparseAutoencoder, path: str | Path, **card: Any) -> Path:
    """Write ``path`` (.safetensors, card in the metadata header) and ``path`` with ``.json``."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        path = path.with_suffix(".safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = sae.card(**card)
    tensors = {k: v.detach().float().contiguous().cpu() for k, v in sae.state_dict().items()}
    save_file(tensors, str(path), metadata={"card": json.dumps(meta, default=str)})
    path.with_suffix(".json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
    return path


def read_card(path: str | Path) -> dict:
    """The JSON card stored in an SAE ``.safetensors`` header."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as fh:
        meta = fh.metadata() or {}
    if "card" not in meta:
        raise SAEError(f"{path}: no SAE card in the safetensors header; write SAEs with biointerp.features.save_sae")
    return json.loads(meta["card"])


def load_sae(path: str | Path, device: str | torch.device = "cpu") -> SparseAutoencoder:
    """Load an SAE written by :func:`save_sae`, or a published Evo 2 ``.pt`` (see :func:`load_published_sae`)."""
    path = Path(path)
    if not path.exists():
        raise SAEError(f"{path}: no such SAE file")
    if path.suffix in (".pt", ".pth", ".bin"):
        return load_published_sae(path).to(device)
    from safetensors.torch import load_file

    card = read_card(path)
    sae = SparseAutoencoder(card["d_in"], card["d_hidden"], card["k"], card["kind"], card["tied"],
                            card.get("rank_ramp", 0.0), seed=None)
    _load_checked(sae, load_file(str(path)), str(path))
    sae.card_extra = {k: v for k, v in card.items() if k not in sae.card()}
    return sae.to(device).eval()


def _k_from_name(name: str) -> int | None:
    m = re.search(r"(?:^|[-_])k_?(\d+)(?:[-_.]|$)", name)
    return int(m.group(1)) if m else None


def strip_prefixes(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Drop leading ``_orig_mod.`` (torch.compile) and ``module.`` (DDP) prefixes from keys."""
    out = {}
    for key, value in state.items():
        k = key
        while k.startswith(PUBLISHED_PREFIXES):
            k = k[len("_orig_mod."):] if k.startswith("_orig_mod.") else k[len("module."):]
        if k in out:
            raise SAEError(f"state dict has {key!r} and another key that both map to {k!r}")
        out[k] = value
    return out


def load_published_sae(path: str | Path, k: int | None = None, kind: str = "batch_topk",
                       dtype: torch.dtype = torch.float32) -> SparseAutoencoder:
    """Load the Evo 2 SAE layout: a torch state dict ``{W [d_in, d_hidden], b_enc, b_dec}``.

    Read with ``torch.load(weights_only=True)``; keys may carry ``_orig_mod.``
    or ``module.`` prefixes. ``k`` defaults to the ``k_NN`` in the file name
    (e.g. ``sae-layer26-mixed-expansion_8-k_64.pt``). An optional ``W_dec
    [d_hidden, d_in]`` makes it untied. Unknown keys or wrong shapes raise
    :class:`SAEError` naming them."""
    path = Path(path)
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - report any unpickling refusal plainly
        raise SAEError(f"{path}: not a weights-only torch state dict ({type(err).__name__}: {err})") from err
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise SAEError(f"{path}: expected a dict of tensors (a state dict)")
    state = strip_prefixes(state)
    unknown = sorted(set(state) - {"W", "b_enc", "b_dec", "W_dec", "input_scale"})
    if unknown:
        raise SAEError(f"{path}: unknown keys {unknown}; the Evo 2 SAE layout has W, b_enc, b_dec "
                       "(optionally W_dec), with or without _orig_mod./module. prefixes")
    if "W" not in state or getattr(state["W"], "ndim", 0) != 2:
        raise SAEError(f"{path}: expected a 2-D tensor 'W' [d_in, d_hidden]; keys are {sorted(state)}")
    d_in, d_hidden = state["W"].shape
    k = k or _k_from_name(path.name)
    if k is None:
        raise SAEError(f"{path}: the file does not say k; pass k= (e.g. 64 for the Evo 2 SAE)")
    sae = SparseAutoencoder(d_in, d_hidden, k, kind, tied="W_dec" not in state, seed=None)
    _load_checked(sae, state, str(path))
    sae.card_extra = {"source": str(path.name)}
    return sae.to(dtype).eval()


def _load_checked(sae: SparseAutoencoder, state: dict[str, Tensor], where: str) -> None:
    expected = {k: tuple(v.shape) for k, v in sae.state_dict().items()}
    optional = {"input_scale"}
    unknown = sorted(set(state) - set(expected))
    missing = sorted(set(expected) - set(state) - optional)
    if unknown or missing:
        raise SAEError(f"{where}: unknown keys {unknown} / missing keys {missing}; an SAE has "
                       f"{sorted(expected)}")
    bad = [f"{k} {tuple(state[k].shape)} (expected {expected[k]})" for k in state
           if tuple(state[k].shape) != expected[k]]
    if bad:
        raise SAEError(f"{where}: wrong shapes: {', '.join(bad)}")
    with torch.no_grad():
        for name, t in state.items():
            getattr(sae, name).copy_(t.to(getattr(sae, name).dtype))
