"""Causal tests: edit a layer's output through an SAE during the forward pass.

Every edit is applied as ``h + (f' − f) @ D / scale`` (``f`` the SAE latents of
the layer output ``h``, ``f'`` the edited latents, ``D`` the decoder), i.e. the
SAE's reconstruction error is kept, so a pass with no edit returns ``h``
bit-for-bit. Edits: ``ablate`` (latent → 0), ``clamp`` (latent → value) and
``steer`` (add ``value ×`` the latent's decoder direction).
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

from biointerp.features.sae import SparseAutoencoder

EDITS = ("none", "ablate", "clamp", "steer")


@contextlib.contextmanager
def edit_output(model, layer: str, fn: Callable[[Tensor], Tensor]) -> Iterator[None]:
    """Replace the output ``h [B, L, d]`` of ``model``'s sub-module ``layer`` by ``fn(h)``."""
    modules = dict(model.module.named_modules())
    if layer not in modules or not layer:
        raise KeyError(f"unknown layer {layer!r}; e.g. {[n for n in modules if n.startswith('blocks')][:4]}")

    def hook(_m, _a, out):
        if isinstance(out, tuple):
            return (fn(out[0]),) + tuple(out[1:])
        return fn(out)

    handle = modules[layer].register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def encode_rows(sae: SparseAutoencoder, h: Tensor) -> Tensor:
    """SAE latents of ``h [B, L, d]``, each sequence encoded on its own (batch-top-k over its tokens)."""
    return torch.stack([sae.encode(row) for row in h])


def latent_edit(sae: SparseAutoencoder, latent: int | Sequence[int], mode: str = "ablate", value: float = 0.0,
                positions: slice | np.ndarray | Tensor | None = None) -> Callable[[Tensor], Tensor]:
    """A function ``h -> h'`` applying one edit to ``latent`` at ``positions`` (all by default)."""
    if mode not in EDITS:
        raise ValueError(f"mode must be one of {EDITS}, got {mode!r}")
    lat = [int(latent)] if np.isscalar(latent) else [int(j) for j in latent]
    bad = [j for j in lat if not 0 <= j < sae.d_hidden]
    if bad:
        raise ValueError(f"latent(s) {bad} out of range [0, {sae.d_hidden})")
    pos = slice(None) if positions is None else positions

    def fn(h: Tensor) -> Tensor:
        if mode == "none":
            return h
        if mode == "steer":
            delta = torch.zeros_like(h)
            d = sum(sae.direction(j) for j in lat).to(h.dtype)
            delta[:, pos] = value * d
            return h + delta
        f = encode_rows(sae, h.float())
        g = f.clone()
        for j in lat:
            g[:, pos, j] = 0.0 if mode == "ablate" else value
        return h + ((g - f) @ sae.decoder / sae.input_scale).to(h.dtype)

    return fn


def splice_reconstruction(sae: SparseAutoencoder) -> Callable[[Tensor], Tensor]:
    """``h -> decode(encode(h))``: the layer output replaced by the SAE reconstruction (no error term)."""
    return lambda h: sae.decode(encode_rows(sae, h.float())).to(h.dtype)


def log_probs_with(model, seqs: Sequence[str], layer: str | None = None,
                   fn: Callable[[Tensor], Tensor] | None = None, batch_size: int = 8) -> np.ndarray:
    """Per-base log p(x_t | x_<t) ``[n, L-1]`` of equal-length ``seqs`` with an optional edit at ``layer``."""
    out = []
    ctx = edit_output(model, layer, fn) if fn is not None else contextlib.nullcontext()
    with ctx:
        for i in range(0, len(seqs), batch_size):
            ids, mask = model.tokenize(list(seqs[i:i + batch_size]))
            out.append(model.log_probs(ids, mask).float().cpu().numpy())
    return np.concatenate(out)


def generate(model, prompts: Sequence[str], n_tokens: int, layer: str | None = None,
             fn: Callable[[Tensor], Tensor] | None = None, temperature: float = 1.0, seed: int = 0,
             alphabet: str = "ACGT") -> list[str]:
    """Sample ``n_tokens`` bases after each prompt (equal lengths), restricted to ``alphabet``,
    with an optional edit at ``layer`` during every forward pass. Returns the continuations."""
    gen = torch.Generator().manual_seed(seed)
    allowed = torch.tensor([ord(c) for c in alphabet])
    seqs = list(prompts)
    ctx = edit_output(model, layer, fn) if fn is not None else contextlib.nullcontext()
    with ctx:
        for _ in range(n_tokens):
            ids, _ = model.tokenize(seqs)
            logits = model.forward(ids).logits[:, -1, allowed].float().cpu() / temperature
            pick = torch.multinomial(torch.softmax(logits, -1), 1, generator=gen)[:, 0]
            seqs = [s + alphabet[int(j)] for s, j in zip(seqs, pick)]
    return [s[len(p):] for s, p in zip(seqs, prompts)]
