"""The model protocol every backend implements, and forward-hook activation capture."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Sequence

import torch
from torch import Tensor, nn

PAD_ID = 1  # Evo 2 CharLevelTokenizer pad id
EOD_ID = 0


@dataclass
class ModelOutput:
    """``logits`` (B, L, V) and ``activations`` {layer name: (B, L, d)}."""

    logits: Tensor
    activations: dict[str, Tensor] = field(default_factory=dict)


class ByteTokenizer:
    """Evo 2's byte-level tokenizer: one token per UTF-8 byte (A=65, C=67, G=71, T=84).

    Sequences are upper-cased first (the byte ids are case-sensitive). Batches are
    right-padded with ``PAD_ID`` and returned with a boolean mask."""

    pad_id = PAD_ID
    vocab_size = 512

    def encode(self, seq: str) -> list[int]:
        data = seq.upper().encode("utf-8")
        return list(data)

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(chr(min(max(int(i), 32), 0x10FFFF)) for i in ids)

    def __call__(self, seqs: str | Sequence[str]) -> tuple[Tensor, Tensor]:
        if isinstance(seqs, str):
            seqs = [seqs]
        if len(seqs) == 0:
            raise ValueError("tokenize: got no sequences")
        return pad_right([self.encode(s) for s in seqs], self.pad_id)


def pad_right(encoded: Sequence[Sequence[int]], pad_id: int) -> tuple[Tensor, Tensor]:
    """Token id lists -> right-padded ids (B, L) long and a bool mask (B, L)."""
    if len(encoded) == 0:
        raise ValueError("tokenize: got no sequences")
    width = max(len(e) for e in encoded)
    if width == 0:
        raise ValueError("tokenize: all sequences are empty")
    ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(encoded), width), dtype=torch.bool)
    for i, e in enumerate(encoded):
        ids[i, : len(e)] = torch.tensor(list(e), dtype=torch.long)
        mask[i, : len(e)] = True
    return ids, mask


def _first(out: object) -> Tensor:
    if isinstance(out, Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], Tensor):
        return out[0]
    if hasattr(out, "last_hidden_state"):
        return out.last_hidden_state  # type: ignore[no-any-return]
    raise TypeError(f"cannot capture a module output of type {type(out).__name__}")


@contextlib.contextmanager
def capture(root: nn.Module, names: Iterable[str], last: int | None = None,
            detach: bool = True) -> Iterator[dict[str, Tensor]]:
    """Record the outputs of ``root``'s named sub-modules with plain forward hooks.

    Tuple outputs keep element 0. ``last`` keeps only the final ``last`` positions
    (axis 1). The dict is filled while the ``with`` body runs the model."""
    acts: dict[str, Tensor] = {}
    modules = dict(root.named_modules())
    handles = []
    names = list(dict.fromkeys(names))
    unknown = [n for n in names if n not in modules or n == ""]
    if unknown:
        sample = [n for n in modules if n][:8]
        raise KeyError(f"unknown layer name(s) {unknown}; layer names look like {sample} "
                       "(see `biointerp models info <spec>`)")
    for name in names:
        def hook(_mod: nn.Module, _args: tuple, out: object, name: str = name) -> None:
            t = _first(out)
            if last is not None:
                t = t[:, -last:]
            acts[name] = t.detach() if detach else t
        handles.append(modules[name].register_forward_hook(hook))
    try:
        yield acts
    finally:
        for h in handles:
            h.remove()


class GenomicModel:
    """Protocol: a sequence model with named layers, logits and hooked activations.

    Attributes: ``name``, ``kind`` ("causal" | "masked"), ``d_model``, ``vocab_size``,
    ``layer_names``, ``device``, ``dtype``, ``supports_prefix_reuse``."""

    name: str = "model"
    kind: str = "causal"
    d_model: int = 0
    vocab_size: int = 0
    supports_prefix_reuse: bool = False
    module: nn.Module

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return self._dtype

    @property
    def layer_names(self) -> list[str]:
        return [n for n, _ in self.module.named_modules() if n]

    def tokenize(self, seqs: str | Sequence[str]) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def _logits(self, input_ids: Tensor, attention_mask: Tensor | None) -> Tensor:
        raise NotImplementedError

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                layers: Sequence[str] = ()) -> ModelOutput:
        """Logits (B, L, V) and activations {name: (B, L, d)} of the requested layers."""
        input_ids = self._check_ids(input_ids)
        if attention_mask is not None:
            attention_mask = attention_mask.to(self.device)
        with torch.inference_mode(), capture(self.module, layers) as acts:
            logits = self._logits(input_ids, attention_mask)
        return ModelOutput(logits, dict(acts))

    __call__ = forward

    def log_probs(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """Per-position log p(x_t | x_<t) for t = 1..L-1, shape (B, L-1), fp32.
        Padded targets (mask False) are NaN."""
        if self.kind != "causal":
            raise NotImplementedError(f"{self.name} is a masked LM: log p(x_t | x_<t) is undefined; "
                                      "use forward() logits (e.g. masked marginals) instead")
        out = self.forward(input_ids, attention_mask)
        lp = token_log_probs(out.logits, input_ids.to(out.logits.device))
        if attention_mask is not None:
            lp = lp.masked_fill(~attention_mask[:, 1:].to(lp.device).bool(), float("nan"))
        return lp

    def _check_ids(self, input_ids: Tensor) -> Tensor:
        if not isinstance(input_ids, Tensor) or input_ids.ndim != 2:
            raise ValueError("input_ids must be a (B, L) integer tensor; use model.tokenize(seqs)")
        if input_ids.dtype.is_floating_point:
            raise ValueError("input_ids must be integer token ids")
        if input_ids.numel() and (int(input_ids.min()) < 0 or int(input_ids.max()) >= self.vocab_size):
            raise ValueError(f"token ids must lie in [0, {self.vocab_size})")
        return input_ids.to(self.device)

    def to(self, device: str | torch.device | None = None,
           dtype: torch.dtype | None = None) -> "GenomicModel":
        if device is not None:
            self.module.to(device)
        if dtype is not None:
            self.module.to(dtype)
            self._dtype = dtype
        return self

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, kind={self.kind!r}, d_model={self.d_model}, "
                f"device={self.device}, dtype={self.dtype})")


def token_log_probs(logits: Tensor, input_ids: Tensor) -> Tensor:
    """log p(x_t | x_<t) for t = 1..L-1 from causal logits (B, L, V) -> (B, L-1), fp32."""
    lsm = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    return lsm.gather(-1, input_ids[:, 1:, None].long()).squeeze(-1)
