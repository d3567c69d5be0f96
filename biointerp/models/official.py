"""Optional backend through the official ``evo2`` package (extra ``biointerp[evo2]``).

Needs the official stack (CUDA, Transformer Engine, flash-attn as that package requires);
use it to compare against the native implementation on a machine where it runs."""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor

from biointerp.models.base import ByteTokenizer, GenomicModel


class OfficialEvo2Model(GenomicModel):
    """``evo2.Evo2(name)`` behind the protocol; hooks go on its vortex ``StripedHyena``."""

    kind = "causal"
    supports_prefix_reuse = False

    def __init__(self, evo: Any, name: str, dtype: torch.dtype) -> None:
        self.evo = evo
        self.module = evo.model
        self.name = f"evo2-official:{name}"
        cfg = self.module.config
        self.d_model = int(cfg.hidden_size)
        self.vocab_size = int(cfg.vocab_size)
        self.tokenizer = ByteTokenizer()
        self._dtype = dtype

    def tokenize(self, seqs: str | Sequence[str]) -> tuple[Tensor, Tensor]:
        return self.tokenizer(seqs)

    def _logits(self, input_ids: Tensor, attention_mask: Tensor | None) -> Tensor:
        out = self.module(input_ids)
        return out[0] if isinstance(out, tuple) else out


def load_official(name: str, device: str | torch.device = "cpu",
                  dtype: torch.dtype = torch.bfloat16, **kw: Any) -> OfficialEvo2Model:
    """Load ``evo2.Evo2(name, local_path=checkpoint)``; a clear error if ``evo2`` is missing."""
    try:
        from evo2 import Evo2  # type: ignore[import-not-found]
    except ImportError as err:
        raise ImportError(
            "the 'evo2-official:' backend needs the official evo2 package (pip install "
            "'biointerp[evo2]', which needs CUDA, Transformer Engine and flash-attn). "
            f"Import failed: {err}. The native backend (load_model('{name}', checkpoint=...)) "
            "runs without it.") from err
    local = kw.get("checkpoint")
    if not local:
        raise ValueError(f"evo2-official:{name} needs checkpoint=<local .pt path> "
                         "(biointerp never downloads at load time)")
    evo = Evo2(name, local_path=str(local))
    return OfficialEvo2Model(evo, name, dtype)
