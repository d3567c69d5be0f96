"""Hugging Face backend: a causal or masked LM from a local directory (no download).

Activations are captured with forward hooks on the transformers module names
(e.g. ``model.layers.1``, ``esm.encoder.layer.0``). Directories without tokenizer files
use the Evo 2 byte tokenizer (A=65, C=67, G=71, T=84).

Per-base contract. Everything the rest of biointerp reads (``tokenize`` ids, ``forward``
logits and activations, ``log_probs``) is indexed by base position: token ``i`` is base
``i`` of the sequence. So:

* the tokenizer must be character level (one token per base). ``HFModel`` checks this when
  it is built, by encoding a probe string without special tokens, and raises
  :class:`CheckpointError` for k-mer / BPE tokenizers (DNABERT-2, Nucleotide Transformer,
  GENA-LM, ...);
* ``tokenize`` returns base-only ids, right-padded (``padding_side`` is forced to "right");
* the special tokens the tokenizer adds (BOS/CLS in front, EOS/SEP after the last base,
  found at load by encoding the probe with and without them) are added back inside
  ``forward``: each row becomes ``lead + bases + trail + padding``, the model runs on
  that (it was trained with them), and the special positions are cut from the logits
  and the hooked activations before they are returned. Callers never see them; a masked
  marginal that writes the mask id at base ``i`` masks the model's token for base ``i``.
* ``log_probs`` keeps the protocol's shape (B, L−1): bases 1..L−1. For a causal model
  whose tokenizer adds a leading token (BOS), ``log_probs(..., include_first=True)``
  returns (B, L) with base 0 scored from that token (NaN when there is none); nothing
  in biointerp asks for it by default.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from biointerp.models.base import (
    ByteTokenizer,
    GenomicModel,
    ModelOutput,
    capture,
    pad_right,
    token_log_probs,
)
from biointerp.models.checkpoint import CheckpointError

_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json",
                    "tokenizer.model")
_PROBE = "ACGTNACGTA"


def _ids(tokenizer: Any, text: str, specials: bool) -> list[int]:
    return [int(i) for i in tokenizer(text, add_special_tokens=specials)["input_ids"]]


def _special_frame(tokenizer: Any, name: str) -> tuple[list[int], list[int]]:
    """Check ``tokenizer`` is character level; return the (leading, trailing) special ids it adds."""
    kind = type(tokenizer).__name__
    if getattr(tokenizer, "name_or_path", ""):
        kind += f" ({tokenizer.name_or_path})"
    need = ("biointerp's per-base scoring and activation harvest need a character-level "
            "tokenizer (one token per base, e.g. HyenaDNA's, Caduceus's or Evo 2's)")
    plain = _ids(tokenizer, _PROBE, False)
    if len(plain) != len(_PROBE):
        raise CheckpointError(f"{name}: tokenizer {kind} gives {len(plain)} tokens for the "
                              f"{len(_PROBE)} bases of {_PROBE!r}, not one per base (a k-mer or BPE "
                              f"tokenizer?); {need}")
    by_base: dict[str, set[int]] = {}
    for base, tok in zip(_PROBE, plain):
        by_base.setdefault(base, set()).add(tok)
    acgt = [by_base[b] for b in "ACGT"]
    if any(len(s) != 1 for s in by_base.values()) or len(set().union(*acgt)) != 4:
        raise CheckpointError(f"{name}: tokenizer {kind} does not give A, C, G, T one distinct id "
                              f"each (got { {b: sorted(s) for b, s in by_base.items()} }; "
                              f"sequences are upper-cased before tokenizing); {need}")
    frames = []
    for probe in (_PROBE, _PROBE[:3]):
        bases, full = _ids(tokenizer, probe, False), _ids(tokenizer, probe, True)
        n = len(bases)
        at = [s for s in range(len(full) - n + 1) if full[s:s + n] == bases]
        if not at:
            raise CheckpointError(f"{name}: tokenizer {kind} changes the base tokens when it adds "
                                  f"special tokens ({bases} -> {full}); {need}")
        frames.append((full[:at[0]], full[at[0] + n:]))
    if frames[0] != frames[1]:
        raise CheckpointError(f"{name}: tokenizer {kind} adds different special tokens to sequences "
                              f"of different lengths ({frames}); biointerp cannot strip them")
    return frames[0]


class HFModel(GenomicModel):
    """A ``transformers`` model behind the :class:`GenomicModel` protocol, indexed by base.

    ``special_lead`` / ``special_trail``: the special-token ids added around every row
    inside :meth:`forward` (empty for the byte tokenizer)."""

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
        self.special_lead: list[int] = []
        self.special_trail: list[int] = []
        self.mask_token_id: int | None = None
        if self.byte_tokenizer is not None:
            if self.vocab_size < 256:
                raise CheckpointError(f"{name}: no tokenizer files and vocab_size={self.vocab_size} < 256, "
                                      "so the byte tokenizer cannot be used; save a tokenizer in the directory")
            self.pad_id = self.byte_tokenizer.pad_id
        else:
            tokenizer.padding_side = "right"
            self.special_lead, self.special_trail = _special_frame(tokenizer, name)
            self.mask_token_id = getattr(tokenizer, "mask_token_id", None)
            pad = getattr(tokenizer, "pad_token_id", None)
            if pad is None:
                pad = getattr(tokenizer, "eos_token_id", None)
            self.pad_id = int(pad) if pad is not None else 0
        self._dtype = dtype
        self.to(device, dtype)

    def tokenize(self, seqs: str | Sequence[str]) -> tuple[Tensor, Tensor]:
        """Upper-cased, base-only ids (B, L) right-padded with ``pad_id``, and a bool mask (B, L)."""
        if isinstance(seqs, str):
            seqs = [seqs]
        seqs = [s.upper() for s in seqs]
        if self.byte_tokenizer is not None:
            return self.byte_tokenizer(seqs)
        if len(seqs) == 0:
            raise ValueError("tokenize: got no sequences")
        encoded = self.hf_tokenizer(list(seqs), add_special_tokens=False)["input_ids"]
        for s, e in zip(seqs, encoded):
            if len(e) != len(s):
                raise ValueError(f"{self.name}: the tokenizer gave {len(e)} tokens for a {len(s)}-base "
                                 f"sequence ({s[:20]!r}...); characters outside its vocabulary?")
        return pad_right(encoded, self.pad_id)

    def _with_specials(self, ids: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """Base ids (B, L) -> ``lead + bases + trail + pad`` ids and mask (B, nl + L + nt)."""
        B, L = ids.shape
        nl, nt = len(self.special_lead), len(self.special_trail)
        if nl == 0 and nt == 0:
            return ids, (None if mask is None else mask.to(ids.device).bool())
        if mask is None:
            mask = torch.ones_like(ids, dtype=torch.bool)
        mask = mask.to(ids.device).bool()
        lengths = mask.sum(1)
        if not torch.equal(mask, torch.arange(L, device=ids.device)[None, :] < lengths[:, None]):
            raise ValueError("attention_mask must mark a prefix of each row (right padding, as "
                             "model.tokenize returns it)")
        full = torch.full((B, nl + L + nt), self.pad_id, dtype=ids.dtype, device=ids.device)
        fmask = torch.zeros((B, nl + L + nt), dtype=torch.bool, device=ids.device)
        full[:, nl:nl + L] = ids
        fmask[:, nl:nl + L] = mask
        if nl:
            full[:, :nl] = torch.tensor(self.special_lead, dtype=ids.dtype, device=ids.device)
            fmask[:, :nl] = True
        if nt:
            pos = nl + lengths[:, None] + torch.arange(nt, device=ids.device)[None, :]
            trail = torch.tensor(self.special_trail, dtype=ids.dtype, device=ids.device).expand(B, nt)
            full.scatter_(1, pos, trail)
            fmask.scatter_(1, pos, True)
        return full, fmask

    def _full_logits(self, ids: Tensor, mask: Tensor | None) -> Tensor:
        """Logits over ``lead + bases + trail`` positions (B, nl + L + nt, V)."""
        full, fmask = self._with_specials(ids, mask)
        return self.module(input_ids=full, attention_mask=None if fmask is None else fmask.long()).logits

    def _logits(self, input_ids: Tensor, attention_mask: Tensor | None) -> Tensor:
        nl = len(self.special_lead)
        return self._full_logits(input_ids, attention_mask)[:, nl:nl + input_ids.shape[1]]

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                layers: Sequence[str] = ()) -> ModelOutput:
        """Per-base logits (B, L, V) and activations {name: (B, L, d)}; special positions cut."""
        ids = self._check_ids(input_ids)
        with torch.inference_mode(), capture(self.module, layers) as acts:
            logits = self._full_logits(ids, attention_mask)
        nl, L = len(self.special_lead), ids.shape[1]
        return ModelOutput(logits[:, nl:nl + L], {k: v[:, nl:nl + L] for k, v in acts.items()})

    __call__ = forward

    def log_probs(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                  include_first: bool = False) -> Tensor:
        """log p(base_t | bases_<t) for t = 1..L-1, (B, L-1) fp32, NaN where padded.

        ``include_first=True``: (B, L) for t = 0..L-1, base 0 scored from the leading
        special token (BOS) when the tokenizer adds one, else NaN."""
        if not include_first or self.kind != "causal":
            return super().log_probs(input_ids, attention_mask)
        ids = self._check_ids(input_ids)
        with torch.inference_mode():
            logits = self._full_logits(ids, attention_mask)
        nl, L = len(self.special_lead), ids.shape[1]
        rest = token_log_probs(logits[:, nl:nl + L], ids)
        if nl:
            lsm0 = torch.log_softmax(logits[:, nl - 1].float(), dim=-1)
            first = lsm0.gather(-1, ids[:, :1].long())
        else:
            first = torch.full_like(rest[:, :1], float("nan"))
        lp = torch.cat([first, rest], dim=1)
        if attention_mask is not None:
            lp = lp.masked_fill(~attention_mask.to(lp.device).bool(), float("nan"))
        return lp


def load_hf(directory: str | Path, device: str | torch.device = "cpu",
            dtype: torch.dtype = torch.float32, kind: str | None = None, **_: Any) -> HFModel:
    """Load ``directory`` (config.json + weights) as a causal or masked LM, offline.

    ``kind`` ("causal"/"masked") is inferred from ``config.architectures`` when omitted."""
    from transformers import (
        AutoConfig,
        AutoModelForCausalLM,
        AutoModelForMaskedLM,
        AutoTokenizer,
    )

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
