"""The native StripedHyena 2 backend: protocol wrapper and prefix reuse."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from torch import Tensor

from biointerp.models.base import ByteTokenizer, GenomicModel, ModelOutput, capture, token_log_probs
from biointerp.models.striped_hyena import LayerCache, StripedHyena


@dataclass
class PrefixState:
    """A reference sequence run once: per-block caches plus its full ``output``
    (logits and the requested activations over all positions)."""

    input_ids: Tensor  # (1, L)
    stores: list[dict] = field(repr=False)
    output: ModelOutput = field(repr=False)
    #: last block run (None: all, with logits); suffix passes cannot go deeper
    stop_after: int | None = None

    @property
    def length(self) -> int:
        return int(self.input_ids.shape[1])

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for s in self.stores for t in s.values()
                   if isinstance(t, Tensor))


class StripedHyenaModel(GenomicModel):
    """Evo 2 / StripedHyena 2 in pure PyTorch behind the :class:`GenomicModel` protocol."""

    kind = "causal"
    supports_prefix_reuse = True
    #: prefill / forward_suffix take ``logits=False``: only the blocks up to the deepest hooked layer run
    supports_early_exit = True

    def __init__(self, module: StripedHyena, name: str = "striped_hyena",
                 device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                 card: dict[str, Any] | None = None) -> None:
        self.module = module.eval()
        self.name = name
        self.card = card or {}
        self.config = module.config
        self.d_model = int(module.config.hidden_size)
        self.vocab_size = int(module.config.vocab_size)
        self.tokenizer = ByteTokenizer()
        self._dtype = dtype
        self.to(device, dtype)

    def to(self, device: str | torch.device | None = None,
           dtype: torch.dtype | None = None) -> "StripedHyenaModel":
        if device is not None:
            self.module.to(device)
        if dtype is not None:
            self.module.cast(dtype)
            self._dtype = dtype
        return self

    @property
    def layer_names(self) -> list[str]:
        names = ["embedding_layer"]
        for i, block in enumerate(self.module.blocks):
            mixer = "inner_mha_cls" if block.kind == "attn" else "filter"
            names += [f"blocks.{i}", f"blocks.{i}.{mixer}", f"blocks.{i}.mlp.l3"]
        return names + ["norm"]

    def tokenize(self, seqs: str | Sequence[str]) -> tuple[Tensor, Tensor]:
        return self.tokenizer(seqs)

    def _logits(self, input_ids: Tensor, attention_mask: Tensor | None) -> Tensor:
        if attention_mask is not None:
            _check_right_padded(attention_mask)
        return self.module(input_ids)

    def last_block(self, layers: Sequence[str]) -> int | None:
        """The deepest block ``layers`` read (−1: the embedding only; None: ``norm``, i.e. all)."""
        deepest = -1
        for name in layers:
            if name == "norm":
                return None
            if name.startswith("blocks."):
                deepest = max(deepest, int(name.split(".")[1]))
        return deepest

    def activations(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                    layers: Sequence[str] = ()) -> dict[str, Tensor]:
        """Activations {name: (B, L, d)} of ``layers`` from a pass that stops after the deepest
        of them (the same bits as :meth:`forward`; no logits)."""
        input_ids = self._check_ids(input_ids)
        if attention_mask is not None:
            _check_right_padded(attention_mask)
        with torch.inference_mode(), capture(self.module, layers) as acts:
            self.module(input_ids, None, stop_after=self.last_block(layers))
        return dict(acts)

    # ------------------------------------------------------------------ prefix reuse
    def prefill(self, input_ids: Tensor, layers: Sequence[str] = (), logits: bool = True) -> PrefixState:
        """Run the reference ``input_ids`` (1, L) once, keeping what suffix passes need.

        ``logits=False``: run only the blocks up to the deepest of ``layers`` (their
        activations are the same bits as in a full pass); ``output.logits`` is then None
        and suffix passes of this prefix take ``logits=False`` too."""
        if input_ids.ndim == 1:
            input_ids = input_ids[None]
        input_ids = self._check_ids(input_ids)
        if input_ids.shape[0] != 1:
            raise ValueError("prefill takes one reference sequence, input_ids of shape (1, L)")
        stop = None if logits else self.last_block(layers)
        caches = [LayerCache("record") for _ in self.module.blocks]
        with torch.inference_mode(), capture(self.module, layers) as acts:
            out = self.module(input_ids, caches, stop_after=stop)
        return PrefixState(input_ids, [c.store for c in caches], ModelOutput(out, dict(acts)), stop)

    def forward_suffix(self, prefix: PrefixState, input_ids: Tensor, start: int,
                       layers: Sequence[str] = (),
                       attention_mask: Tensor | None = None, logits: bool = True) -> ModelOutput:
        """Logits/activations at positions ``start..L'-1`` of ``input_ids`` (B, L'),
        whose tokens before ``start`` equal the prefix's. Equals a full forward there.
        ``logits=False``: only the blocks up to the deepest of ``layers`` (logits None)."""
        stop = None if logits else self.last_block(layers)
        if prefix.stop_after is not None and (stop is None or stop > prefix.stop_after):
            raise ValueError(f"the prefix was run up to block {prefix.stop_after} only (prefill(logits=False)); "
                             "prefill with logits=True (or the same layers) for deeper layers or logits")
        input_ids = self._check_ids(input_ids)
        B, L = input_ids.shape
        if not 0 <= start < L:
            raise ValueError(f"start={start} must lie in [0, {L})")
        if start > prefix.length:
            raise ValueError(f"start={start} is past the prefix length {prefix.length}")
        ref = prefix.input_ids[:, :start].to(input_ids.device)
        if not torch.equal(input_ids[:, :start], ref.expand(B, -1)):
            raise ValueError("forward_suffix: tokens before `start` differ from the prefix; "
                             "use the first position where the sequences differ as `start`")
        if attention_mask is not None:
            _check_right_padded(attention_mask)
        caches = [LayerCache("suffix", store, start) for store in prefix.stores]
        with torch.inference_mode(), capture(self.module, layers, last=L - start) as acts:
            out = self.module(input_ids[:, start:], caches, stop_after=stop)
        return ModelOutput(out, dict(acts))

    def suffix_log_probs(self, prefix: PrefixState, suffix: ModelOutput, input_ids: Tensor,
                         start: int) -> Tensor:
        """log p(x_t | x_<t) for t = max(start,1)..L'-1 from a ``forward_suffix`` output,
        shape (B, L' - max(start, 1)), fp32 (the logit at ``start-1`` comes from the prefix)."""
        B = input_ids.shape[0]
        logits = suffix.logits
        if start > 0:
            prev = prefix.output.logits[:, start - 1: start].expand(B, -1, -1).to(logits.dtype)
            logits = torch.cat((prev, logits), dim=1)
            return token_log_probs(logits, input_ids[:, start - 1:].to(logits.device))
        return token_log_probs(logits, input_ids.to(logits.device))


def _check_right_padded(mask: Tensor) -> None:
    m = mask.bool()
    if m.shape[1] > 1 and bool((m[:, 1:] & ~m[:, :-1]).any()):
        raise ValueError("causal models need right padding (mask True then False per row); "
                         "use model.tokenize(seqs), which right-pads")
