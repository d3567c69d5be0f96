"""Genomic language models behind one protocol, and ``load_model(spec)``.

Specs:

* ``"demo"`` — the bundled demo StripedHyena in ``biointerp/assets/demo_model/``.
* ``"evo2_7b"``, ``"evo2_7b_base"``, ``"evo2_7b_262k"``, ``"evo2_1b_base"``, ``"evo2_20b"``, ``"evo2_40b"``,
  ``"evo2_40b_base"`` — native Evo 2 with the registry's architecture config and a local
  checkpoint (``checkpoint=PATH``, ``$BIOINTERP_CHECKPOINTS/<name>.pt`` or the local
  Hugging Face cache; never downloaded).
* a directory with ``config.yml``/``config.json`` + weights — a native StripedHyena 2.
* ``"hf:<dir>"`` — a Hugging Face causal or masked LM from a local directory.
* ``"evo2-official:<name>"`` — the official ``evo2`` package, when installed.

Precision: fp32 matches the official implementation to <= 1e-5 x max|expected| on every
golden tensor. bf16 follows the production dtype policy (``log_poles``, ``residues``,
``inv_freq`` fp32; FIR/FFT convolutions and norms computed in fp32; logits in fp32); on the
parity model it stays within 8% of max|logits| of fp32 (measured 4.3%) with per-token
log-probs correlated r > 0.999 (measured 0.9998) — tests/test_models_native.py.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from biointerp.models.base import ByteTokenizer, GenomicModel, ModelOutput, capture, token_log_probs
from biointerp.models.checkpoint import (CheckpointError, build_from_dir, load_state_into,
                                         read_state_dict, save_model)
from biointerp.models.native import PrefixState, StripedHyenaModel
from biointerp.models.striped_hyena import (StripedHyena, StripedHyenaConfig, build_meta,
                                            layer_pattern, random_model, tiny_config)

__all__ = [
    "GenomicModel", "ModelOutput", "ByteTokenizer", "capture", "token_log_probs", "PrefixState",
    "StripedHyena", "StripedHyenaConfig", "StripedHyenaModel", "CheckpointError", "REGISTRY",
    "load_model", "save_model", "random_model", "tiny_config", "evo2_config", "read_state_dict",
    "DEMO_DIR",
]

DEMO_DIR = Path(__file__).resolve().parents[1] / "assets" / "demo_model"


def _evo2(hidden: int, layers: int, heads: int, mlp: int, *, attn: list[int] | None = None,
          base: float = 10000, scaling: float | None = None, max_seqlen: int = 8192,
          multiple_of: int = 16, name: str) -> dict[str, Any]:
    return {
        "model_name": name, "vocab_size": 512, "hidden_size": hidden, "num_filters": hidden,
        "num_layers": layers, **layer_pattern(layers, attn),
        "hcm_filter_length": 128, "hcl_filter_groups": hidden, "hcm_filter_groups": hidden // 16,
        "hcs_filter_groups": hidden // 16, "hcs_filter_length": 7, "short_filter_length": 3,
        "num_attention_heads": heads, "short_filter_bias": False, "eps": 1e-6, "state_size": 16,
        "rotary_emb_base": base, "use_interpolated_rotary_pos_emb": scaling is not None,
        "rotary_emb_scaling_factor": scaling or 1, "make_vocab_size_divisible_by": 8,
        "inner_size_multiple_of": multiple_of, "inner_mlp_size": mlp, "proj_groups": 1,
        "column_split_hyena": False, "column_split": True, "interleave": True,
        "evo2_style_activations": True, "model_parallel_size": 1, "tie_embeddings": True,
        "mha_out_proj_bias": True, "hyena_out_proj_bias": True, "hyena_flip_x1x2": False,
        "qkv_proj_bias": False, "max_seqlen": max_seqlen, "max_batch_size": 1, "final_norm": True,
        "prefill_style": "fft", "mlp_activation": "gelu", "tokenizer_type": "CharLevelTokenizer",
    }


_ATTN_40B = [3, 10, 17, 24, 31, 35, 42, 49]

#: name -> (architecture config, checkpoint file name, note). The numbers are those of
#: the official ``evo2/configs/*.yml`` (ArcInstitute/evo2, checked against commit 53f1959);
#: pass ``config=<official yml>`` to override one.
REGISTRY: dict[str, dict[str, Any]] = {
    "evo2_7b": {"config": _evo2(4096, 32, 32, 11264, scaling=128, max_seqlen=1048576,
                                name="evo2_7b"),
                "file": "evo2_7b.pt", "hf": "arcinstitute/evo2_7b", "note": "evo2-7b-1m.yml"},
    "evo2_7b_262k": {"config": _evo2(4096, 32, 32, 11008, scaling=32, max_seqlen=262144,
                                     name="evo2_7b_262k"),
                     "file": "evo2_7b_262k.pt", "hf": "arcinstitute/evo2_7b_262k",
                     "note": "evo2-7b-262k.yml"},
    "evo2_7b_base": {"config": _evo2(4096, 32, 32, 11008, max_seqlen=32768, name="evo2_7b_base"),
                     "file": "evo2_7b_base.pt", "hf": "arcinstitute/evo2_7b_base",
                     "note": "evo2-7b-8k.yml"},
    "evo2_1b_base": {"config": _evo2(1920, 25, 15, 5120, name="evo2_1b_base"),
                     "file": "evo2_1b_base.pt", "hf": "arcinstitute/evo2_1b_base",
                     "note": "evo2-1b-8k.yml"},
    "evo2_20b": {"config": _evo2(8192, 24, 64, 22528, base=1e6, scaling=128, max_seqlen=1048576,
                                 multiple_of=128, name="evo2_20b"),
                 "file": "evo2_20b.pt", "hf": "arcinstitute/evo2_20b", "note": "evo2-20b-1m.yml"},
    "evo2_40b": {"config": _evo2(8192, 50, 64, 22528, attn=_ATTN_40B, base=1e6, scaling=128,
                                 max_seqlen=1048576, multiple_of=128, name="evo2_40b"),
                 "file": "evo2_40b.pt", "hf": "arcinstitute/evo2_40b",
                 "note": "evo2-40b-1m.yml; shipped as .pt.part0/.part1"},
    "evo2_40b_base": {"config": _evo2(8192, 50, 64, 21888, attn=_ATTN_40B, base=1e6,
                                      multiple_of=128, name="evo2_40b_base"),
                      "file": "evo2_40b_base.pt", "hf": "arcinstitute/evo2_40b_base",
                      "note": "evo2-40b-8k.yml"},
}


def evo2_config(name: str) -> StripedHyenaConfig:
    """The architecture config of a registered Evo 2 model."""
    if name not in REGISTRY:
        raise KeyError(f"unknown model {name!r}; registered: {sorted(REGISTRY)}")
    return StripedHyenaConfig(dict(REGISTRY[name]["config"]))


def _checkpoint_candidates(name: str) -> list[Path]:
    entry = REGISTRY[name]
    out = []
    env = os.environ.get("BIOINTERP_CHECKPOINTS")
    if env:
        out += [Path(env) / entry["file"], Path(env) / name / entry["file"]]
    hub = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "hub"
    repo = hub / ("models--" + entry["hf"].replace("/", "--")) / "snapshots"
    if repo.is_dir():
        out += sorted(repo.glob(f"*/{entry['file']}"))
    return out


def _load_registered(name: str, checkpoint: str | Path | None, config: str | Path | None,
                     device: str, dtype: torch.dtype) -> StripedHyenaModel:
    cfg = StripedHyenaConfig.from_file(config) if config else evo2_config(name)
    if checkpoint is None:
        candidates = _checkpoint_candidates(name)
        found = [p for p in candidates if p.exists() or Path(f"{p}.part0").exists()]
        if not found:
            where = ", ".join(str(p) for p in candidates) or "(no BIOINTERP_CHECKPOINTS, no HF cache)"
            raise CheckpointError(
                f"{name}: no local checkpoint. Download {REGISTRY[name]['file']} from "
                f"huggingface.co/{REGISTRY[name]['hf']} and pass checkpoint=PATH "
                f"(--checkpoint on the CLI) or put it in $BIOINTERP_CHECKPOINTS. Looked in: {where}")
        checkpoint = found[0]
    path = Path(checkpoint)
    if path.is_dir():
        module, card = build_from_dir(path, cfg, dtype=dtype)
    else:
        if not path.exists() and not Path(f"{path}.part0").exists():
            raise CheckpointError(f"{name}: checkpoint {path} not found (nor {path}.part0)")
        module = build_meta(cfg)
        load_state_into(module, [path], dtype=dtype)
        card = {"checkpoint": str(path)}
    return StripedHyenaModel(module, name=name, device=device, dtype=dtype, card=card)


def load_model(spec: str | Path, device: str | torch.device = "cpu",
               dtype: torch.dtype | str = torch.float32, **kw: Any) -> GenomicModel:
    """Load a model by spec (see the module docstring) on ``device`` in ``dtype``.

    Keyword arguments: ``checkpoint=`` (registered Evo 2 names), ``config=`` (override the
    architecture YAML). Nothing is downloaded."""
    if isinstance(dtype, str):
        dtype = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16,
                 "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16}[dtype]
    spec = str(spec)
    if spec.startswith("hf:"):
        from biointerp.models.hf import load_hf

        return load_hf(spec[3:], device=device, dtype=dtype, **kw)
    if spec.startswith("evo2-official:"):
        from biointerp.models.official import load_official

        return load_official(spec.split(":", 1)[1], device=device, dtype=dtype, **kw)
    if spec in REGISTRY:
        return _load_registered(spec, kw.get("checkpoint"), kw.get("config"), str(device), dtype)
    if spec == "demo":
        if not DEMO_DIR.is_dir():
            raise CheckpointError(f"the bundled demo model is missing: {DEMO_DIR} "
                                  "(build it with `biointerp train-lm`)")
        path = DEMO_DIR
    else:
        path = Path(spec)
    if path.is_dir():
        module, card = build_from_dir(path, dtype=dtype)
        name = "demo" if spec == "demo" else card.get("name", path.name)
        return StripedHyenaModel(module, name=name, device=device, dtype=dtype, card=card)
    raise CheckpointError(
        f"cannot resolve model spec {spec!r}: not a directory, not 'demo', not 'hf:<dir>' or "
        f"'evo2-official:<name>', and not a registered name ({', '.join(sorted(REGISTRY))})")
