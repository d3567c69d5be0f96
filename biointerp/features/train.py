"""Train sparse autoencoders with lightning on streamed activations.

Two sources, both with bounded memory (a fixed-size shuffle buffer, never the
whole set of activations):

* :class:`ModelActivations` runs a model over windows tiling a genome and
  yields rows of one layer's output;
* :class:`StoreActivations` reads an activation store shard by shard and yields
  rows of one stored tensor (flattened to ``[-1, d]``, all-zero padding rows dropped).

:func:`train_sae` fits a :class:`~biointerp.features.sae.SparseAutoencoder`
(MSE at unit input scale plus an auxiliary loss that lets dead latents learn
the residual), tracking dead latents, L0, MSE and explained variance;
:func:`evaluate_sae` adds the model's loss with the reconstruction spliced in
against the clean and zero-ablated loss.
"""

from __future__ import annotations

import math
import time
from typing import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import IterableDataset

from biointerp.features.sae import SparseAutoencoder


# --------------------------------------------------------------------------- streams
class _ShuffleBuffer:
    """Rows in, shuffled batches out, never more than ``capacity`` rows held."""

    def __init__(self, capacity: int, batch_size: int, seed: int) -> None:
        self.capacity, self.batch_size = int(capacity), int(batch_size)
        self.gen = torch.Generator().manual_seed(seed)
        self.rows: list[Tensor] = []
        self.n = 0

    def push(self, x: Tensor) -> Iterator[Tensor]:
        self.rows.append(x)
        self.n += len(x)
        if self.n >= self.capacity:
            yield from self._drain(keep=self.capacity // 2)

    def _drain(self, keep: int) -> Iterator[Tensor]:
        allr = torch.cat(self.rows)
        allr = allr[torch.randperm(len(allr), generator=self.gen)]
        cut = max(len(allr) - keep, 0) // self.batch_size * self.batch_size
        for i in range(0, cut, self.batch_size):
            yield allr[i:i + self.batch_size]
        self.rows, self.n = [allr[cut:]], len(allr) - cut

    def flush(self) -> Iterator[Tensor]:
        if self.n:
            yield from self._drain(keep=0)
            rest = self.rows[0]
            if len(rest):
                yield rest
            self.rows, self.n = [], 0


def genome_windows(contigs: dict[str, str], window: int, stride: int | None = None) -> list[tuple[str, int]]:
    """``(chrom, start0)`` of windows of ``window`` bases tiling each contig with ``stride``."""
    stride = stride or window
    out = []
    for chrom, seq in contigs.items():
        if len(seq) < window:
            out.append((chrom, 0))
            continue
        starts = list(range(0, len(seq) - window + 1, stride))
        if starts[-1] + window < len(seq):
            starts.append(len(seq) - window)
        out += [(chrom, s) for s in starts]
    return out


class ModelActivations(IterableDataset):
    """Rows ``[batch_size, d]`` of ``layer``'s output over windows of ``contigs`` (shuffled, bounded).

    ``skip`` leading positions of each window are dropped (little left context);
    ``max_tokens`` caps the rows yielded per pass; ``buffer_tokens`` bounds memory."""

    def __init__(self, model, contigs: dict[str, str], layer: str, window: int = 512, skip: int = 32,
                 batch_size: int = 1024, buffer_tokens: int = 65536, windows_per_pass: int = 8,
                 max_tokens: int | None = None, seed: int = 0) -> None:
        self.model, self.contigs, self.layer = model, contigs, layer
        self.window, self.skip, self.batch_size = window, skip, batch_size
        self.buffer_tokens, self.windows_per_pass = buffer_tokens, windows_per_pass
        self.max_tokens, self.seed = max_tokens, seed
        self.d = int(model.d_model)

    def __iter__(self) -> Iterator[Tensor]:
        rng = np.random.default_rng(self.seed)
        wins = genome_windows(self.contigs, self.window, self.window - self.skip)
        order = rng.permutation(len(wins))
        buf = _ShuffleBuffer(self.buffer_tokens, self.batch_size, self.seed)
        n = 0
        for i in range(0, len(order), self.windows_per_pass):
            seqs = [self.contigs[c][s:s + self.window] for c, s in (wins[j] for j in order[i:i + self.windows_per_pass])]
            ids, mask = self.model.tokenize(seqs)
            acts = self.model.forward(ids, mask, layers=[self.layer]).activations[self.layer].float().cpu()
            rows = torch.cat([a[self.skip:int(m.sum())] for a, m in zip(acts, mask)])
            for b in buf.push(rows):
                yield b
                n += len(b)
                if self.max_tokens and n >= self.max_tokens:
                    return
        for b in buf.flush():
            yield b
            n += len(b)
            if self.max_tokens and n >= self.max_tokens:
                return


class StoreActivations(IterableDataset):
    """Rows ``[batch_size, d]`` of tensor ``name`` of an activation store, streamed shard by shard."""

    def __init__(self, store_path, name: str | None = None, batch_size: int = 1024, buffer_tokens: int = 65536,
                 read_batch: int = 64, seed: int = 0) -> None:
        from biointerp.store import ActivationStore

        self.store = ActivationStore.open(store_path)
        names = self.store.tensor_names()
        if not names:
            raise ValueError(f"{store_path}: the activation store holds no tensors yet")
        float_names = [n for n in names if n not in ("positions", "loss_diff")]
        self.name = name or float_names[0]
        if self.name not in names:
            raise ValueError(f"{store_path}: no tensor {self.name!r}; the store has {names}")
        self.batch_size, self.buffer_tokens, self.read_batch, self.seed = batch_size, buffer_tokens, read_batch, seed
        self.d = int(self.store.manifest.get("d") or 0)

    def __iter__(self) -> Iterator[Tensor]:
        buf = _ShuffleBuffer(self.buffer_tokens, self.batch_size, self.seed)
        for _ids, tensors in self.store.iter_batches([self.name], batch_size=self.read_batch):
            t = tensors[self.name].float()
            rows = t.reshape(-1, t.shape[-1])
            rows = rows[rows.abs().sum(-1) > 0]
            if not self.d:
                self.d = rows.shape[-1]
            yield from buf.push(rows)
        yield from buf.flush()


class TensorRows(IterableDataset):
    """Endless shuffled batches ``[batch_size, d]`` from rows already in memory (small runs, tests)."""

    def __init__(self, rows: Tensor, batch_size: int = 1024, seed: int = 0) -> None:
        self.rows, self.batch_size, self.seed = rows.float(), batch_size, seed
        self.d = int(rows.shape[-1])

    def __iter__(self) -> Iterator[Tensor]:
        gen = torch.Generator().manual_seed(self.seed)
        if len(self.rows) < self.batch_size:
            return
        while True:
            perm = torch.randperm(len(self.rows), generator=gen)
            for i in range(0, len(perm) - self.batch_size + 1, self.batch_size):
                yield self.rows[perm[i:i + self.batch_size]]


class MixedRows(IterableDataset):
    """Batches of ``source`` with a ``fraction`` of each batch's rows replaced by rows drawn (with
    replacement) from ``extra`` (e.g. :func:`element_rows`): an SAE then sees rare elements often
    enough to give them latents. Memory: ``extra`` plus what ``source`` holds."""

    def __init__(self, source: IterableDataset, extra: Tensor, fraction: float, seed: int = 0) -> None:
        if not 0 < fraction < 1:
            raise ValueError("fraction must lie in (0, 1)")
        if not len(extra):
            raise ValueError("no extra rows to mix in (no element of those classes in the regions?)")
        self.source, self.extra, self.fraction, self.seed = source, extra.float(), fraction, seed
        self.d = getattr(source, "d", None) or int(extra.shape[-1])

    def __iter__(self) -> Iterator[Tensor]:
        gen = torch.Generator().manual_seed(self.seed)
        for x in self.source:
            n = int(round(self.fraction * len(x)))
            idx = torch.randint(0, len(self.extra), (n,), generator=gen)
            out = torch.cat([x[: len(x) - n].float(), self.extra[idx]])
            yield out[torch.randperm(len(out), generator=gen)]


def collect_rows(model, contigs: dict[str, str], layer: str, n_rows: int, window: int = 512, skip: int = 32,
                 seed: int = 0) -> Tensor:
    """Up to ``n_rows`` activation rows of ``layer`` over random windows of ``contigs`` (one model pass each)."""
    src = ModelActivations(model, contigs, layer, window, skip, batch_size=min(n_rows, 4096),
                           buffer_tokens=max(n_rows, 8192), max_tokens=n_rows, seed=seed)
    return torch.cat(list(src))[:n_rows]


def element_rows(model, contigs: dict[str, str], elements, classes, layer: str, n_rows: int, window: int = 256,
                 flank: int = 8, seed: int = 0) -> Tensor:
    """Up to ``n_rows`` activation rows of ``layer`` at the bases of annotated elements whose type is
    in ``classes`` (± ``flank`` bases), each element read in a ``window``-bp window that ends just
    after it (a causal model sees an element only once it has read it). ``elements``: a table with
    ``chrom, start, end, type`` (1-based, inclusive, as GFF3). For enriching an SAE's training
    rows with short, rare elements (splice sites, start codons, motifs) that random windows
    almost never contain."""
    from biointerp.harvest import run_batched

    el = elements[elements["type"].isin(list(classes)) & elements["chrom"].isin(list(contigs))]
    el = el.sample(frac=1.0, random_state=seed)
    seqs, keep, total = [], [], 0
    for r in el.itertuples(index=False):
        seq = contigs[r.chrom]
        lo, hi = max(0, int(r.start) - 1 - flank), min(len(seq), int(r.end) + flank)
        w0 = max(0, hi - window)
        seqs.append(seq[w0:hi])
        keep.append((lo - w0, hi - w0))
        total += hi - lo
        if total >= n_rows:
            break
    if not seqs:
        return torch.zeros(0, int(model.d_model))
    acts = run_batched(model, seqs, [layer], batch_size=16)
    rows = torch.cat([a[layer][a0:a1] for a, (a0, a1) in zip(acts, keep)])
    return rows[:n_rows]


# --------------------------------------------------------------------------- training
class SAEObjective(torch.nn.Module):
    """The training loss of an SAE on a batch, with dead-latent tracking and a metrics history.

    Loss = MSE at unit input scale / batch variance + ``aux_weight`` × the same for the
    residual reconstructed by the top ``aux_k`` *dead* latents (latents silent for more than
    ``dead_tokens`` tokens), so dead latents get a gradient towards what is left to explain."""

    def __init__(self, sae: SparseAutoencoder, aux_k: int, aux_weight: float, dead_tokens: int) -> None:
        super().__init__()
        self.sae, self.aux_k, self.aux_weight, self.dead_tokens = sae, aux_k, aux_weight, dead_tokens
        self.register_buffer("since_fired", torch.zeros(sae.d_hidden, dtype=torch.long))
        self.history: list[dict] = []
        self.tokens = 0

    def forward(self, x: Tensor, step: int) -> Tensor:
        s = self.sae
        xs = x * s.input_scale
        pre = s.pre_acts(x)
        f = s.select(pre)
        err = xs - (f @ s.decoder + s.b_dec)
        mse = err.pow(2).sum(-1).mean()
        var = (xs - xs.mean(0)).pow(2).sum(-1).mean().clamp_min(1e-8)
        with torch.no_grad():
            self.since_fired += len(x)
            self.since_fired[(f > 0).any(0)] = 0
        dead = self.since_fired > self.dead_tokens
        loss = mse / var
        n_dead = int(dead.sum())
        if self.aux_k and n_dead:
            pre_dead = pre.masked_fill(~dead, 0.0)
            idx = pre_dead.topk(min(self.aux_k, n_dead), dim=-1).indices
            fa = torch.zeros_like(pre).scatter(-1, idx, pre_dead.gather(-1, idx))
            loss = loss + self.aux_weight * (err.detach() - fa @ s.decoder).pow(2).sum(-1).mean() / var
        self.tokens += len(x)
        if step % 10 == 0:
            with torch.no_grad():
                self.history.append({"step": int(step), "tokens": self.tokens, "mse": float(mse / s.d_in),
                                     "explained_variance": float(1 - mse / var),
                                     "l0": float((f > 0).sum(-1).float().mean()), "dead_fraction": n_dead / s.d_hidden})
        return loss

    def after_step(self) -> None:
        """Keep an untied decoder's rows at unit norm."""
        if not self.sae.tied:
            with torch.no_grad():
                self.sae.W_dec.div_(self.sae.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-8))


def _lightning_module(objective: SAEObjective, lr: float):
    import lightning as L

    class SAETraining(L.LightningModule):
        """Lightning wrapper of :class:`SAEObjective` (Adam)."""

        def __init__(self) -> None:
            super().__init__()
            self.objective = objective

        def training_step(self, x: Tensor, _i: int) -> Tensor:
            loss = self.objective(x, int(self.global_step))
            if self.global_step % 10 == 0 and self.objective.history:
                h = self.objective.history[-1]
                self.log_dict({"ev": h["explained_variance"], "dead": h["dead_fraction"]}, prog_bar=True)
            return loss

        def on_train_batch_end(self, *_a) -> None:
            self.objective.after_step()

        def configure_optimizers(self):
            return torch.optim.Adam(self.objective.sae.parameters(), lr=lr)

    return SAETraining()


def _plain_loop(objective: SAEObjective, source: IterableDataset, steps: int, lr: float, device: str,
                progress: bool) -> int:
    from tqdm.auto import tqdm

    objective.to(device)
    opt = torch.optim.Adam(objective.sae.parameters(), lr=lr)
    step = 0
    bar = tqdm(total=steps, desc="train SAE", disable=not progress)
    while step < steps:
        n_before = step
        for x in source:
            loss = objective(x.to(device), step)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            objective.after_step()
            step += 1
            bar.update(1)
            if step >= steps:
                break
        if step == n_before:
            raise ValueError("the activation source yielded no batches")
    bar.close()
    return step


def init_from_batch(sae: SparseAutoencoder, x: Tensor, standardize: bool = False) -> None:
    """Set ``input_scale`` so rows have mean norm ``sqrt(d_in)`` (``standardize``: each dimension
    unit variance instead), ``b_dec`` to their mean and ``b_enc`` to ``−mean @ W`` (pre-activations
    start centred, so no latent starts dead because of a large shared offset in the activations)."""
    with torch.no_grad():
        x = x.float()
        if standardize:
            sae.input_scale.copy_(1.0 / x.std(0).clamp_min(1e-6))
        else:
            sae.input_scale.fill_(math.sqrt(sae.d_in) / float(x.norm(dim=-1).mean().clamp_min(1e-8)))
        scale = sae.input_scale
        mean = (x.float() * scale).mean(0)
        sae.b_dec.copy_(mean)
        sae.b_enc.copy_(-(mean @ sae.W))
        if not sae.tied:
            sae.W_dec.div_(sae.W_dec.norm(dim=1, keepdim=True))


def train_sae(source: IterableDataset, d_in: int, d_hidden: int, k: int, kind: str = "batch_topk",
              tied: bool = True, steps: int = 500, lr: float = 1e-3, aux_k: int | None = None,
              aux_weight: float = 1 / 32, dead_tokens: int = 50_000, seed: int = 0, engine: str = "lightning",
              device: str = "cpu", standardize: bool = False,
              progress: bool = False) -> tuple[SparseAutoencoder, dict]:
    """Fit an SAE on batches ``[b, d_in]`` from ``source`` for ``steps`` optimizer steps.

    ``engine``: ``lightning`` (a ``lightning.Trainer``: devices, precision and logging
    come with it) or ``plain`` (the same objective in a bare Adam loop; no lightning
    import, which costs seconds of start-up, for small runs such as the demo).
    ``standardize`` scales each input dimension to unit variance (a per-dimension
    ``input_scale``) so that one dominant direction does not take the whole objective.
    Returns ``(sae, report)``; ``report``: ``history`` (every 10 steps: tokens,
    mse, explained_variance, l0, dead_fraction), ``final`` (the mean of the
    last 5 records), ``tokens``, ``seconds``, ``tokens_per_s``, ``dead_latents``, ``steps``."""
    if engine not in ("lightning", "plain"):
        raise ValueError("engine must be 'lightning' or 'plain'")
    torch.manual_seed(seed)
    sae = SparseAutoencoder(d_in, d_hidden, k, kind, tied, seed=seed)
    first = next(iter(source), None)
    if first is None:
        raise ValueError("the activation source yielded no batches (empty store or genome region?)")
    init_from_batch(sae, first, standardize)
    objective = SAEObjective(sae, aux_k if aux_k is not None else min(2 * k, d_hidden), aux_weight, dead_tokens)
    if engine == "lightning":
        import lightning as L  # before the clock: ``tokens_per_s`` is the training's, not the import's

        module = _lightning_module(objective, lr)
    t0 = time.perf_counter()
    if engine == "plain":
        done = _plain_loop(objective, source, steps, lr, device, progress)
    else:
        loader = torch.utils.data.DataLoader(source, batch_size=None)
        trainer = L.Trainer(max_steps=steps, max_epochs=10_000, accelerator="gpu" if str(device).startswith("cuda") else "cpu",
                            devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=progress,
                            enable_model_summary=False, num_sanity_val_steps=0)
        trainer.fit(module, loader)
        done = int(trainer.global_step)
    secs = time.perf_counter() - t0
    sae.cpu().eval()
    hist = objective.history
    final = {k_: float(np.mean([h[k_] for h in hist[-5:]])) for k_ in ("mse", "explained_variance", "l0",
                                                                       "dead_fraction")} if hist else {}
    report = {"history": hist, "final": final, "tokens": objective.tokens, "seconds": secs,
              "tokens_per_s": objective.tokens / max(secs, 1e-9),
              "dead_latents": int((objective.since_fired > dead_tokens).sum()), "steps": done, "engine": engine}
    return sae, report


# --------------------------------------------------------------------------- evaluation
def evaluate_sae(model, sae: SparseAutoencoder, layer: str, seqs: Sequence[str], batch_size: int = 8,
                 skip: int = 32) -> dict:
    """Reconstruction quality of ``sae`` at ``layer`` on ``seqs`` (equal lengths).

    Returns ``mse`` (per dimension, input scale), ``explained_variance``, ``l0``
    and the model's mean next-base cross-entropy (nats) ``clean_loss``,
    ``spliced_loss`` (layer output replaced by the reconstruction),
    ``zero_loss`` (layer output zeroed), and ``loss_recovered`` =
    (zero − spliced) / (zero − clean). Positions before ``skip`` are ignored."""
    torch.set_grad_enabled(False)
    try:
        return _evaluate(model, sae, layer, seqs, batch_size, skip)
    finally:
        torch.set_grad_enabled(True)


def _evaluate(model, sae, layer, seqs, batch_size, skip) -> dict:
    from biointerp.features.intervene import encode_rows, log_probs_with, splice_reconstruction

    se = sv = 0.0
    l0 = n = 0
    mean_acc = None
    rows = []
    for i in range(0, len(seqs), batch_size):
        ids, mask = model.tokenize(list(seqs[i:i + batch_size]))
        h = model.forward(ids, mask, layers=[layer]).activations[layer].float()[:, skip:]
        f = encode_rows(sae, h)
        rec = sae.decode(f)
        se += float((rec - h).pow(2).sum())
        rows.append(h.reshape(-1, h.shape[-1]).mean(0))
        l0 += int((f > 0).sum())
        n += h.shape[0] * h.shape[1]
    mean_acc = torch.stack(rows).mean(0)
    for i in range(0, len(seqs), batch_size):
        ids, mask = model.tokenize(list(seqs[i:i + batch_size]))
        h = model.forward(ids, mask, layers=[layer]).activations[layer].float()[:, skip:]
        sv += float((h - mean_acc).pow(2).sum())
    clean = log_probs_with(model, seqs, batch_size=batch_size)[:, skip:]
    spliced = log_probs_with(model, seqs, layer, splice_reconstruction(sae), batch_size)[:, skip:]
    zero = log_probs_with(model, seqs, layer, torch.zeros_like, batch_size)[:, skip:]
    cl, sp, ze = -float(np.nanmean(clean)), -float(np.nanmean(spliced)), -float(np.nanmean(zero))
    return {"mse": se / (n * sae.d_in), "explained_variance": 1 - se / max(sv, 1e-12), "l0": l0 / n,
            "clean_loss": cl, "spliced_loss": sp, "zero_loss": ze,
            "loss_recovered": (ze - sp) / (ze - cl) if ze != cl else float("nan"), "n_tokens": n}
