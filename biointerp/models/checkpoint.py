"""Safe checkpoint reading/writing for native StripedHyena models.

Only safetensors and ``torch.load(weights_only=True, mmap=True)`` are used; no pickle
code execution. Byte-split official checkpoints (``evo2_40b.pt.part0``, ``.part1``…) are
merged once into the ``.pt`` they were split from."""

from __future__ import annotations

import io
import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor
from tqdm.auto import tqdm

from biointerp.models.striped_hyena import (StripedHyena, StripedHyenaConfig,
                                            export_official_state_dict)

CONFIG_NAMES = ("config.yml", "config.yaml", "config.json")
WEIGHT_FORMAT = "biointerp-striped-hyena-2"


class CheckpointError(FileNotFoundError):
    """A model file is missing or unreadable; the message says where we looked."""


def _parts(path: Path) -> list[Path]:
    parts = []
    i = 0
    while (p := path.with_name(f"{path.name}.part{i}")).exists():
        parts.append(p)
        i += 1
    return parts


def merge_parts(path: Path, out: Path | None = None) -> Path:
    """Concatenate ``path.part0, path.part1, …`` into ``out`` (default ``path``).

    Written to a temporary name first, then renamed, so an interrupted merge never leaves a
    truncated checkpoint behind."""
    parts = _parts(path)
    if not parts:
        raise CheckpointError(f"no shards {path.name}.part0, .part1 … next to {path}")
    out = out or path
    total = sum(p.stat().st_size for p in parts)
    if out.exists() and out.stat().st_size == total:
        return out
    tmp = out.with_name(out.name + ".merging")
    with open(tmp, "wb") as dst, tqdm(total=total, unit="B", unit_scale=True,
                                      desc=f"merging {len(parts)} shards of {path.name}") as bar:
        for p in parts:
            with open(p, "rb") as src:
                while chunk := src.read(1 << 26):
                    dst.write(chunk)
                    bar.update(len(chunk))
        dst.flush()
        os.fsync(dst.fileno())
    tmp.replace(out)
    return out


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Read tensors from ``.safetensors``, or ``.pt``/``.pth``/``.bin`` with
    ``torch.load(weights_only=True, mmap=True)``; ``X.pt.part0…`` shards are merged to ``X.pt``."""
    path = Path(path)
    if not path.exists() and _parts(path):
        target = path
        if not os.access(path.parent, os.W_OK):
            cache = Path(os.environ.get("BIOINTERP_CACHE", Path.home() / ".cache" / "biointerp"))
            cache.mkdir(parents=True, exist_ok=True)
            target = cache / path.name
            if shutil.disk_usage(cache).free < sum(p.stat().st_size for p in _parts(path)):
                raise CheckpointError(f"not enough disk space in {cache} to merge {path}.part*")
        path = merge_parts(path, target)
    if not path.exists():
        raise CheckpointError(f"checkpoint file not found: {path}")
    if path.suffix == ".safetensors":
        out = {}
        with safe_open(str(path), framework="pt") as f:
            for key in f.keys():
                out[key] = f.get_tensor(key)
        return out
    # Transformer-Engine checkpoints carry FP8 metadata as io.BytesIO (plain bytes, no code):
    # allow that one class in the weights-only unpickler; the entries are dropped later.
    with torch.serialization.safe_globals([io.BytesIO]):
        try:
            try:
                state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError as err:
                if "mmap" not in str(err):
                    raise
                state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - truncated/corrupt/not-a-checkpoint files
            raise CheckpointError(
                f"{path}: not a readable PyTorch checkpoint ({type(err).__name__}: {err}). "
                "Expected an official .pt state dict (loaded with weights_only=True) or .safetensors."
            ) from err
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a dict of tensors, got {type(state).__name__}")
    return state


def find_config(directory: Path) -> Path:
    for name in CONFIG_NAMES:
        if (directory / name).exists():
            return directory / name
    raise CheckpointError(f"no model config in {directory}: looked for {', '.join(CONFIG_NAMES)}")


def find_weights(directory: Path) -> list[Path]:
    """Weight files of a model directory, in the order they are merged."""
    for name in ("model.safetensors", "weights.safetensors"):
        if (directory / name).exists():
            return [directory / name]
    shards = sorted(directory.glob("*.safetensors"))
    if shards:
        return shards
    pts = sorted(list(directory.glob("*.pt")) + list(directory.glob("*.pth")))
    if pts:
        return pts[:1]
    parts = sorted(directory.glob("*.pt.part0"))
    if parts:
        return [parts[0].with_name(parts[0].name[: -len(".part0")])]
    raise CheckpointError(
        f"no weights in {directory}: looked for model.safetensors, *.safetensors, *.pt, *.pth, *.pt.part0")


def read_card(directory: Path) -> dict[str, Any]:
    card = directory / "card.json"
    return json.loads(card.read_text()) if card.exists() else {}


def save_model(model: Any, directory: str | Path, card: dict | None = None) -> Path:
    """Write ``config.yml``, ``model.safetensors`` (official names, checkpoint Wqkv layout) and
    ``card.json`` to ``directory``; ``load_model(directory)`` reads it back.

    ``model`` is a :class:`StripedHyena` or a native ``GenomicModel`` wrapping one."""
    module = getattr(model, "module", model)
    if not isinstance(module, StripedHyena):
        raise TypeError("save_model expects a StripedHyena (or the GenomicModel wrapping one)")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    module.config.to_yaml(directory / "config.yml")
    tensors = export_official_state_dict(module)
    tmp = directory / "model.safetensors.tmp"
    save_file(tensors, str(tmp), metadata={"format": WEIGHT_FORMAT, "wqkv_layout": "checkpoint"})
    tmp.replace(directory / "model.safetensors")
    card = dict(card or {})
    card.setdefault("architecture", "StripedHyena2")
    card.setdefault("n_parameters", int(sum(p.numel() for p in module.parameters())))
    (directory / "card.json").write_text(json.dumps(card, indent=2, default=str))
    return directory


def load_state_into(module: StripedHyena, files: list[Path], dtype: torch.dtype | None = None) -> None:
    """Load one or more weight files (official key names) into ``module``."""
    from biointerp.models.striped_hyena import load_official_state_dict

    state: dict[str, Tensor] = {}
    for f in files:
        state.update(read_state_dict(f))
    ignored = load_official_state_dict(module, state, source=str(files[0]), dtype=dtype)
    if ignored:
        warnings.warn(f"{files[0]}: ignored {len(ignored)} unknown tensor(s), e.g. {ignored[:5]}",
                      stacklevel=2)


def build_from_dir(directory: str | Path, config: StripedHyenaConfig | None = None,
                   dtype: torch.dtype | None = None) -> tuple[StripedHyena, dict[str, Any]]:
    """Build a StripedHyena from a model directory (config + weights) -> (module, card)."""
    from biointerp.models.striped_hyena import build_meta

    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"model directory not found: {directory}")
    cfg = config or StripedHyenaConfig.from_file(find_config(directory))
    module = build_meta(cfg)
    load_state_into(module, find_weights(directory), dtype=dtype)
    return module, read_card(directory)
