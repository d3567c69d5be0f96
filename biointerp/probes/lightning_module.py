"""The lightning side of probe training: :class:`ProbeModule` and the keep-best callback.

Imported only when a probe is trained with the lightning trainer (``method="minibatch"``,
covariance probes), so reading, applying and evaluating probes never pays lightning's import.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import lightning as L
import numpy as np
import torch
from torch import nn

from biointerp.probes.covariance import head_prediction
from biointerp.probes.evaluate import auroc
from biointerp.probes.linear import LinearProbe
from biointerp.probes.training import _as_dict, head_loss


class ProbeModule(L.LightningModule):
    """Lightning wrapper: AdamW, summed per-head losses, ``val_loss`` / ``val_auroc`` logging."""

    def __init__(self, probe: nn.Module, heads: Mapping[str, Mapping], lr: float = 1e-3,
                 weight_decay: float = 0.0, trainable: str = "all"):
        super().__init__()
        self.probe, self.heads = probe, dict(heads)
        self.lr, self.weight_decay, self.trainable = lr, weight_decay, trainable
        self._val: list = []
        self.history: list[dict] = []

    def forward(self, x, mask=None):
        return _as_dict(self.probe(x, mask), self.heads)

    def _step(self, batch):
        x, mask, t = batch if len(batch) == 3 else (batch[0], None, batch[1])
        out = self(x, mask)
        losses = [l for name, spec in self.heads.items()
                  if (l := head_loss(spec, out[name], t[name])) is not None]
        loss = torch.stack(losses).sum() if losses else out[next(iter(out))].sum() * 0.0
        if isinstance(self.probe, LinearProbe):
            loss = loss + self.probe.penalty()
        return loss, out, t, len(x)

    def training_step(self, batch, batch_idx):
        loss, _, _, n = self._step(batch)
        self.log("train_loss", loss, on_epoch=True, on_step=False, batch_size=n)
        return loss

    def validation_step(self, batch, batch_idx):
        loss, out, t, n = self._step(batch)
        self.log("val_loss", loss, on_epoch=True, batch_size=n, prog_bar=True)
        name = next(iter(self.heads))
        if self.heads[name].get("kind", "binary") == "binary":
            self._val.append((t[name].cpu(), head_prediction(self.heads[name], out[name]).detach().cpu()))

    def on_validation_epoch_end(self):
        m = self.trainer.callback_metrics
        rec = {"epoch": int(self.current_epoch), "val_loss": float(m.get("val_loss", float("nan")))}
        if "train_loss" in m:
            rec["train_loss"] = float(m["train_loss"])
        if self._val:
            y = torch.cat([v[0] for v in self._val]).numpy()
            s = torch.cat([v[1] for v in self._val]).numpy()
            ok = np.isfinite(y)
            rec["val_auroc"] = auroc(y[ok], s[ok]) if ok.any() else float("nan")
            self.log("val_auroc", rec["val_auroc"] if np.isfinite(rec["val_auroc"]) else 0.5)
        self._val = []
        if not self.trainer.sanity_checking:
            self.history.append(rec)

    def configure_optimizers(self):
        params = self.probe.parameters()
        if self.trainable == "heads":
            params = [p for n, p in self.probe.named_parameters() if not n.startswith("proj_")]
        return torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)


class _KeepBest(L.Callback):
    """Keep the weights with the lowest validation loss in memory; restore them at the end."""

    def __init__(self):
        self.best, self.state, self.epoch = float("inf"), None, -1

    def on_validation_end(self, trainer, pl_module):
        if trainer.sanity_checking:
            return
        v = trainer.callback_metrics.get("val_loss")
        if v is not None and float(v) < self.best:
            self.best, self.epoch = float(v), int(trainer.current_epoch)
            self.state = copy.deepcopy({k: t.detach().cpu() for k, t in pl_module.probe.state_dict().items()})

    def on_fit_end(self, trainer, pl_module):
        if self.state is not None:
            pl_module.probe.load_state_dict(self.state)
