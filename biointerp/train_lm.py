"""Train a small causal DNA language model (native StripedHyena 2) on FASTA files.

Byte tokens as in Evo 2 (``ord`` of the upper-cased base, vocabulary 512).
Batches are random windows drawn from the training contigs, each reverse
complemented with probability 1/2; the batch of step ``s`` depends only on
``(seed, s)``, so a run resumed from a checkpoint ends with exactly the same
weights as an uninterrupted one. Output directory:

- ``config.yml``           StripedHyena 2 config (official field names)
- ``model.safetensors``    weights under official key names, card in the metadata
- ``card.json``            config, hyper-parameters, data fingerprint, loss curve, recipe
- ``checkpoint.safetensors`` / ``checkpoint.json``  model + AdamW state for ``--resume``
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import os
import shlex
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from biointerp.models.striped_hyena import (StripedHyena, StripedHyenaConfig, export_official_state_dict,
                                            random_model, tiny_config)

_RC = np.arange(256, dtype=np.uint8)
for _a, _b in zip(b"ACGTN", b"TGCAN"):
    _RC[_a] = _b


@dataclass
class TrainConfig:
    """Hyper-parameters of :func:`train`. Field names match the ``train-lm`` options."""

    fasta: list[str]
    out: str
    exclude_contig: list[str] = field(default_factory=list)
    d_model: int = 64
    layers: int = 8
    heads: int = 4
    hcm_filter_length: int = 128
    seq_len: int = 512
    batch_size: int = 16
    steps: int = 1000
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup: int = 100
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    seed: int = 0
    val_fraction: float = 0.02
    eval_every: int = 100
    checkpoint_every: int = 200
    threads: int = 0  # 0: leave torch's default

    def command(self) -> str:
        """The exact ``biointerp train-lm`` command that reproduces this run."""
        parts = ["biointerp", "train-lm"]
        for f in self.fasta:
            parts += ["--fasta", f]
        parts += ["--out", self.out]
        for c in self.exclude_contig:
            parts += ["--exclude-contig", c]
        for k in ("d_model", "layers", "heads", "hcm_filter_length", "seq_len", "batch_size", "steps",
                  "lr", "min_lr_ratio", "warmup", "weight_decay", "grad_clip", "seed", "val_fraction",
                  "eval_every", "checkpoint_every"):
            parts += ["--" + k.replace("_", "-"), str(getattr(self, k))]
        if self.threads:  # CPU reduction order depends on the thread count
            parts += ["--threads", str(self.threads)]
        return " ".join(shlex.quote(p) for p in parts)


def read_fasta(path: str | Path) -> dict[str, str]:
    """Read a plain or gzip FASTA into ``{name: upper-case sequence}`` (name = first header word)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"FASTA not found: {path}")
    opener = gzip.open if path.read_bytes()[:2] == b"\x1f\x8b" else open
    seqs: dict[str, list[str]] = {}
    name = None
    with opener(path, "rt") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            if line.startswith(">"):
                name = line[1:].split()[0]
                if name in seqs:
                    raise ValueError(f"{path}: contig {name!r} appears twice")
                seqs[name] = []
            elif name is None:
                raise ValueError(f"{path}: not a FASTA file (sequence before the first '>' header)")
            else:
                seqs[name].append(line)
    if not seqs:
        raise ValueError(f"{path}: no FASTA records found")
    return {k: "".join(v).upper() for k, v in seqs.items()}


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class WindowSampler:
    """Deterministic random windows from training contigs plus fixed validation windows."""

    def __init__(self, contigs: dict[str, str], seq_len: int, val_fraction: float, seed: int) -> None:
        self.seq_len = seq_len
        self.seed = seed
        self.train: list[np.ndarray] = []
        self.val: list[np.ndarray] = []
        for name, seq in contigs.items():
            arr = np.frombuffer(seq.encode("ascii"), dtype=np.uint8)
            n_val = int(len(arr) * val_fraction)
            if n_val < seq_len + 1:
                n_val = 0
            tr = arr[:len(arr) - n_val]
            if len(tr) >= seq_len + 1:
                self.train.append(tr)
            if n_val:
                va = arr[len(arr) - n_val:]
                for s in range(0, len(va) - seq_len, seq_len + 1):
                    self.val.append(va[s:s + seq_len + 1])
        if not self.train:
            raise ValueError(f"no contig is longer than seq_len+1 = {seq_len + 1} bp; lower --seq-len")
        lens = np.array([len(t) - seq_len for t in self.train], dtype=np.float64)
        self.weights = lens / lens.sum()
        self.n_tokens = int(sum(len(t) for t in self.train))

    def batch(self, step: int, batch_size: int) -> torch.Tensor:
        """Token ids ``[batch_size, seq_len+1]`` for training step ``step`` (0-based)."""
        rng = np.random.default_rng([self.seed, step])
        which = rng.choice(len(self.train), size=batch_size, p=self.weights)
        out = np.empty((batch_size, self.seq_len + 1), dtype=np.uint8)
        for i, w in enumerate(which):
            s = int(rng.integers(0, len(self.train[w]) - self.seq_len))
            win = self.train[w][s:s + self.seq_len + 1]
            out[i] = _RC[win[::-1]] if rng.random() < 0.5 else win
        return torch.from_numpy(out.astype(np.int64))

    def val_batches(self, batch_size: int, max_windows: int = 32) -> list[torch.Tensor]:
        wins = self.val[:max_windows]
        return [torch.from_numpy(np.stack(wins[i:i + batch_size]).astype(np.int64))
                for i in range(0, len(wins), batch_size)]


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to ``min_lr_ratio * lr``."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))


def lm_loss(model: StripedHyena, ids: torch.Tensor) -> torch.Tensor:
    logits = model(ids[:, :-1])
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), ids[:, 1:].reshape(-1))


@torch.no_grad()
def evaluate(model: StripedHyena, batches: list[torch.Tensor]) -> float:
    """Mean next-token cross-entropy (nats) over ``batches``."""
    if not batches:
        return float("nan")
    model.eval()
    tot, n = 0.0, 0
    for b in batches:
        tot += float(lm_loss(model, b)) * b.shape[0]
        n += b.shape[0]
    model.train()
    return tot / n


def model_config(cfg: TrainConfig) -> StripedHyenaConfig:
    """The StripedHyena 2 config of a run (7B block pattern for 8 layers)."""
    return tiny_config(hidden_size=cfg.d_model, num_layers=cfg.layers, num_attention_heads=cfg.heads,
                       hcm_filter_length=cfg.hcm_filter_length, max_seqlen=max(8192, cfg.seq_len),
                       model_name=f"biointerp-lm-d{cfg.d_model}-l{cfg.layers}")


def _atomic_save(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _atomic_json(obj: dict, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1) + "\n")
    os.replace(tmp, path)


def _save_checkpoint(out: Path, model, opt, step: int, curve: list, cfg: TrainConfig, elapsed: float) -> None:
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    st = opt.state_dict()
    for pid, s in st["state"].items():
        for k, v in s.items():
            tensors[f"optim.{pid}.{k}"] = v if torch.is_tensor(v) else torch.tensor(v)
    _atomic_save(tensors, out / "checkpoint.safetensors")
    _atomic_json({"step": step, "curve": curve, "train_config": asdict(cfg), "elapsed_s": elapsed},
                 out / "checkpoint.json")


def _load_checkpoint(out: Path, model, opt) -> tuple[int, list, float, dict]:
    meta = json.loads((out / "checkpoint.json").read_text())
    tensors = load_file(str(out / "checkpoint.safetensors"))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    st = opt.state_dict()
    state: dict[int, dict] = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, pid, name = k.split(".", 2)
            state.setdefault(int(pid), {})[name] = v
    st["state"] = state
    opt.load_state_dict(st)
    return int(meta["step"]), meta["curve"], float(meta.get("elapsed_s", 0.0)), meta["train_config"]


def data_fingerprint(cfg: TrainConfig, contigs_by_file: dict[str, dict[str, str]]) -> dict:
    files = []
    for f, contigs in contigs_by_file.items():
        entry = {"path": f, "sha256": sha256_file(f), "contigs": {k: len(v) for k, v in contigs.items()}}
        manifest = Path(f).parent / "manifest.json"
        if manifest.exists():  # a biointerp.synth genome: keep how it was generated
            m = json.loads(manifest.read_text())
            if m.get("generator") == "biointerp.synth":
                entry["synth"] = {"config": m.get("config"), "command": m.get("command")}
        files.append(entry)
    return {"files": files, "excluded_contigs": list(cfg.exclude_contig)}


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True,
          log: Callable[[str], None] | None = None, stop_after: int | None = None) -> dict:
    """Train (or resume) a model; writes ``cfg.out`` as described in the module docstring.

    ``stop_after``: stop once this many steps are done (checkpoint only, no
    final model), to be continued with ``resume=True``. Returns the model card
    (also written to ``card.json``), or ``{"stopped_at": step}``.
    """
    from tqdm.auto import tqdm

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    contigs_by_file: dict[str, dict[str, str]] = {}
    contigs: dict[str, str] = {}
    for f in cfg.fasta:
        recs = read_fasta(f)
        contigs_by_file[f] = recs
        for k, v in recs.items():
            if k in contigs:
                raise ValueError(f"contig {k!r} appears in more than one FASTA; rename it")
            contigs[k] = v
    unknown = [c for c in cfg.exclude_contig if c not in contigs]
    if unknown:
        raise ValueError(f"--exclude-contig {unknown} not found; contigs are {list(contigs)[:20]}")
    contigs = {k: v for k, v in contigs.items() if k not in set(cfg.exclude_contig)}
    sampler = WindowSampler(contigs, cfg.seq_len, cfg.val_fraction, cfg.seed)
    val = sampler.val_batches(cfg.batch_size)

    mcfg = model_config(cfg)
    model = random_model(mcfg, seed=cfg.seed)
    model.train()
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.95))
    start, curve, elapsed = 0, [], 0.0
    if resume and (out / "checkpoint.json").exists():
        start, curve, elapsed, old = _load_checkpoint(out, model, opt)
        changed = {k: (old.get(k), v) for k, v in asdict(cfg).items()
                   if k not in ("out", "threads", "checkpoint_every", "eval_every") and old.get(k) != v}
        if changed:
            raise ValueError(f"cannot resume {out}: settings differ from the checkpoint: {changed}")
        if log:
            log(f"resuming from step {start}")
    t0 = time.time()
    end = cfg.steps if stop_after is None else max(start, min(stop_after, cfg.steps))
    bar = tqdm(range(start, end), initial=start, total=cfg.steps, desc="train-lm", disable=not progress,
               unit="step")
    run_loss, run_n = 0.0, 0
    step = start
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg)
        loss = lm_loss(model, sampler.batch(step, cfg.batch_size))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        run_loss += loss.item()
        run_n += 1
        done = step + 1
        if done % cfg.eval_every == 0 or done == cfg.steps:
            v = evaluate(model, val)
            curve.append({"step": done, "train_loss": round(run_loss / run_n, 5),
                          "val_loss": None if math.isnan(v) else round(v, 5), "lr": round(lr_at(step, cfg), 7)})
            run_loss, run_n = 0.0, 0
            bar.set_postfix(train=f"{curve[-1]['train_loss']:.3f}", val=f"{v:.3f}")
        if done % cfg.checkpoint_every == 0 and done < cfg.steps:
            _save_checkpoint(out, model, opt, done, curve, cfg, elapsed + time.time() - t0)
    bar.close()
    elapsed += time.time() - t0
    if end < cfg.steps:
        _save_checkpoint(out, model, opt, end, curve, cfg, elapsed)
        return {"stopped_at": end}
    _save_checkpoint(out, model, opt, cfg.steps, curve, cfg, elapsed)
    return save_trained(model, cfg, curve, data_fingerprint(cfg, contigs_by_file), sampler.n_tokens, elapsed)


def save_trained(model: StripedHyena, cfg: TrainConfig, curve: list, data: dict, n_train_tokens: int,
                 elapsed: float) -> dict:
    """Write ``config.yml``, ``model.safetensors`` (card in metadata) and ``card.json``."""
    import biointerp

    out = Path(cfg.out)
    mcfg = model.config
    card = {
        "name": mcfg.get("model_name", "biointerp-lm"),
        "architecture": "StripedHyena 2 (Evo 2 block pattern hcs/hcm/hcl/attn)",
        "tokenizer": "byte (ord of upper-case base), vocab 512",
        "n_parameters": int(sum(p.numel() for p in model.parameters())),
        "config": dict(mcfg),
        "train_config": asdict(cfg),
        "data": {**data, "n_train_tokens": n_train_tokens},
        "tokens_seen": cfg.steps * cfg.batch_size * cfg.seq_len,
        "loss_curve": curve,
        "final": curve[-1] if curve else {},
        "wall_seconds": round(elapsed, 1),
        "recipe": cfg.command(),
        "versions": {"biointerp": biointerp.__version__, "torch": torch.__version__},
    }
    StripedHyenaConfig(mcfg).to_yaml(out / "config.yml")
    state = {k: v.float() for k, v in export_official_state_dict(model).items()}
    _atomic_save(state, out / "model.safetensors", metadata={"card": json.dumps(card)})
    _atomic_json(card, out / "card.json")
    return card


def load_trained(path: str | Path) -> StripedHyena:
    """Load a ``train-lm`` output directory back into a :class:`StripedHyena` (eval mode)."""
    from biointerp.models.striped_hyena import load_official_state_dict

    path = Path(path)
    cfg = StripedHyenaConfig.from_file(path / "config.yml")
    model = StripedHyena(cfg)
    load_official_state_dict(model, load_file(str(path / "model.safetensors")), source=str(path))
    return model.eval()
