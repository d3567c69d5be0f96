"""Linear probe: L2-regularised logistic regression on standardised features, in torch.

Features are pooled embeddings ``emb.<layer>.<pooling> [N, d]`` used as they are
(``features="pooled"``), the pair (variant, reference) of pooled embeddings
``[N, 2, d]`` as ``[alt, alt - ref]`` (``features="pooled_pair"``, ``2d``), or the EVEE
view ``acts [N,2,3,K,d]`` reduced to the mean over positions of the variant-minus-reference
diff per direction, concatenated (``features="evee_mean_diff"``, ``[N, 2d]``). The probe's
``pairing`` picks the reference view: ``"genomic"`` (default) ``var_same - ref_cross``, the
same genomic base, which a stored ``diff [N,2,K,d]`` (``view=evee_diff``) also holds and so
gives the same features; ``"index"`` ``var_same - ref_same``, the same sequence index
(``acts`` only); see :func:`biointerp.probes.covariance.evee_diffs`.

Objective: ``mean_i BCE(w.z_i + b, y_i) + l2/2 * ||w||^2`` with ``z`` the
standardised features; equals scikit-learn's ``LogisticRegression(C=1/(l2*n))``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from biointerp.probes.covariance import check_pairing, evee_diffs

FEATURE_MODES = ("pooled", "pooled_pair", "evee_mean_diff")


def featurize(x: torch.Tensor, mode: str = "pooled", mask: torch.Tensor | None = None,
              pairing: str = "genomic") -> torch.Tensor:
    """Turn a stored tensor into linear-probe features ``[N, d']`` (see module doc).

    ``mask [N, 2, K]`` (bool, real positions) and ``pairing`` (``"genomic"`` | ``"index"``)
    apply to ``mode="evee_mean_diff"`` only.
    """
    if mode == "pooled":
        if x.dim() != 2:
            raise ValueError(f"pooled features must be [N, d], got {tuple(x.shape)}; "
                             "use features='evee_mean_diff' for the EVEE view")
        return x.float()
    if mode == "pooled_pair":
        if x.dim() != 3 or x.shape[1] != 2:
            raise ValueError(f"pooled_pair features must be [N, 2, d] (alt, ref), got {tuple(x.shape)}")
        x = x.float()
        return torch.cat([x[:, 0], x[:, 0] - x[:, 1]], dim=-1)
    if mode == "evee_mean_diff":
        fwd, bwd = evee_diffs(x, pairing)
        if mask is None:
            return torch.cat([fwd.mean(1), bwd.mean(1)], dim=-1)
        out = []
        for diff, m in ((fwd, mask[:, 0]), (bwd, mask[:, 1])):
            w = m.to(diff.dtype).unsqueeze(-1)
            out.append((diff * w).sum(1) / w.sum(1).clamp_min(1.0))
        return torch.cat(out, dim=-1)
    raise ValueError(f"unknown feature mode {mode!r}; choose one of {FEATURE_MODES}")


class LinearProbe(nn.Module):
    """``logits = linear((featurize(x) - mean) / std)``; ``n_out=1`` for a binary label.

    ``pairing`` (``"genomic"`` | ``"index"``): the EVEE reference view for ``features="evee_mean_diff"``.
    """

    kind = "linear"

    def __init__(self, d: int, n_out: int = 1, features: str = "pooled", l2: float = 1e-3, pairing: str = "genomic"):
        super().__init__()
        self.d, self.n_out, self.features, self.l2 = d, n_out, features, l2
        self.pairing = check_pairing(pairing)
        self.register_buffer("mean", torch.zeros(d))
        self.register_buffer("std", torch.ones(d))
        self.linear = nn.Linear(d, n_out)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def set_standardisation(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Set feature mean/std (std of 0 is treated as 1)."""
        self.mean.copy_(mean.to(self.mean))
        self.std.copy_(torch.where(std > 0, std, torch.ones_like(std)).to(self.std))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        z = (featurize(x, self.features, mask, self.pairing) - self.mean) / self.std
        return self.linear(z)

    def penalty(self) -> torch.Tensor:
        """``l2/2 * ||w||^2`` (bias not penalised)."""
        return 0.5 * self.l2 * self.linear.weight.pow(2).sum()

    def hparams(self) -> dict:
        return {"d": self.d, "n_out": self.n_out, "features": self.features, "l2": self.l2, "pairing": self.pairing}


def linear_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean BCE for one logit, cross-entropy for several outputs."""
    if logits.shape[-1] == 1:
        return F.binary_cross_entropy_with_logits(logits[:, 0], y.float())
    return F.cross_entropy(logits, y.long())


def fit_linear(
    X: np.ndarray | torch.Tensor,
    y: np.ndarray | torch.Tensor,
    l2: float = 1e-3,
    features: str = "pooled",
    method: str = "auto",
    max_iter: int = 500,
    tol: float = 1e-9,
    batch_size: int = 1024,
    epochs: int = 50,
    lr: float = 1e-2,
    seed: int = 0,
    pairing: str = "genomic",
) -> LinearProbe:
    """Fit a :class:`LinearProbe` on in-memory data.

    ``method="lbfgs"``: full-batch L-BFGS (exact optimum, small data);
    ``"minibatch"``: Adam over shuffled minibatches; ``"auto"`` picks L-BFGS
    when the feature matrix has at most 5e7 entries. For data that does not fit
    in memory, train through :func:`biointerp.probes.training.train_probe`. ``pairing``: the
    EVEE reference view for ``features="evee_mean_diff"`` (see the module doc).
    """
    torch.manual_seed(seed)
    X = torch.as_tensor(X)
    y = torch.as_tensor(np.asarray(y))
    Z = featurize(X, features, pairing=pairing)
    n, d = Z.shape
    n_classes = int(y.max().item()) + 1 if y.numel() else 2
    n_out = 1 if n_classes <= 2 else n_classes
    probe = LinearProbe(d, n_out, features, l2, pairing)
    probe.set_standardisation(Z.mean(0), Z.std(0, unbiased=False))
    Zs = (Z - probe.mean) / probe.std
    params = list(probe.linear.parameters())
    if method == "auto":
        method = "lbfgs" if n * d <= 5e7 else "minibatch"
    if method == "lbfgs":
        opt = torch.optim.LBFGS(params, lr=1.0, max_iter=max_iter, tolerance_grad=tol,
                                tolerance_change=tol * 1e-3, history_size=20, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = linear_loss(probe.linear(Zs), y) + probe.penalty()
            loss.backward()
            return loss

        opt.step(closure)
    elif method == "minibatch":
        opt = torch.optim.Adam(params, lr=lr)
        g = torch.Generator().manual_seed(seed)
        for _ in range(epochs):
            for idx in torch.randperm(n, generator=g).split(batch_size):
                opt.zero_grad()
                loss = linear_loss(probe.linear(Zs[idx]), y[idx]) + probe.penalty()
                loss.backward()
                opt.step()
    else:
        raise ValueError(f"unknown method {method!r}; use auto, lbfgs or minibatch")
    return probe
