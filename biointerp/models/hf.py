"""Hugging Face backend: a causal or masked LM from a local directory (no download).

Activations are captured with forward hooks on the transformers module names
(e.g. ``model.layers.1``, ``esm.encoder.layer.0``). Directories without tokenizer files
use the Evo 2 byte tokenizer (A=65, C=67, G=71, T=84)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
from torch import Tensor

from biointerp.models.base import ByteTokenizer, GenomicModel
from biointerp.models.checkpoint import CheckpointError

_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json",
                    "tokenizer.model")


class HFModel(GenomicModel):
    """A ``transformers`` model behind the :class:`GenomicModel` protocol."""

    supports_prefix_reuse = False

    def __init__(self, module: torch.nn.Module, tokenizer: Any | None, name: str, kind: str,
                 device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> None:
        self.module = module.eval()
        self.hf_tokenizer = tokenizer
        self.byte_tokenizer = ByteTokenizer() if tokenizer is None else None
        self.name, self.kind = name, kind
        cfg = module.config
        self.d_model = int(getattr(cfg, "hidden_size", 0) or getattr(cfg, "d_model", 0) or getattr(cfg, "n_embd", 0))
        self.vocab_size = int(cfg.vocab_size)
        if self.byte_tokenizer is not None and self.vocab_size < 256:
            raise CheckpointError(f"{name}: no tokenizer files and vocab_size={self.vocab_size} < 256, "
                                  "so the byte tokenizer cannot be used; save a tokenizer in the directory")
        self._dtype = dtype
        self.to(device, dtype)

    def tokenize(self, seqs: str | Sequence[str]) -> tuple[Tensor, Tensor]:
        if isinstance(seqs, str):
            seqs = [seqs]
        seqs = [s.upper() for s in seqs]
        if self.byte_tokenizer is not None:
            return self.byte_tokenizer(seqs)
        enc = self.hf_tokenizer(list(seqs), return_tensors="pt", padding=True)
        return enc["input_ids"].long(), enc["attention_mask"].bool()

    def _logits(self, input_ids: Tensor, attention_mask: Tensor | None) -> Tensor:
        mask = None if attention_mask is None else attention_mask.long()
        return self.module(input_ids=input_ids, attention_mask=mask).logits


def load_hf(directory: str | Path, device: str | torch.device = "cpu",
            dtype: torch.dtype = torch.float32, kind: str | None = None, **_: Any) -> HFModel:
    """Load ``directory`` (config.json + weights) as a causal or masked LM, offline.

    ``kind`` ("causal"/"masked") is inferred from ``config.architectures`` when omitted."""
    from transformers import (AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM,
                              AutoTokenizer)

    path = Path(directory)
    if not (path / "config.json").exists():
        raise CheckpointError(f"hf:{directory}: no config.json in {path.resolve()} "
                              "(save the model there with model.save_pretrained(dir))")
    config = AutoConfig.from_pretrained(path, local_files_only=True)
    if kind is None:
        archs = " ".join(getattr(config, "architectures", None) or [])
        kind = "masked" if "MaskedLM" in archs else "causal"
    if kind not in ("causal", "masked"):
        raise ValueError(f"kind must be 'causal' or 'masked', got {kind!r}")
    auto = AutoModelForMaskedLM if kind == "masked" else AutoModelForCausalLM
    try:
        module = auto.from_pretrained(path, local_files_only=True, dtype=dtype)
    except OSError as err:
        raise CheckpointError(f"hf:{directory}: cannot read the weights in {path.resolve()}: {err}") from err
    tokenizer = None
    if any((path / f).exists() for f in _TOKENIZER_FILES):
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    return HFModel(module, tokenizer, name=f"hf:{path.name}", kind=kind, device=device, dtype=dtype)
