"""Covariance probe roots: EVEE's Newton-Schulz polynomial (default) vs true PSD square roots."""

from __future__ import annotations

import torch

from biointerp.probes.artifact import load_probe, save_probe
from biointerp.probes.covariance import CovarianceBackbone, CovarianceProbe, newton_schulz_sqrt, psd_sqrt, root_error


def test_psd_sqrt_is_a_root_with_a_correct_gradient():
    g = torch.Generator().manual_seed(0)
    A = torch.randn(3, 6, 6, dtype=torch.double, generator=g)
    C = A @ A.transpose(-1, -2) + 0.1 * torch.eye(6, dtype=torch.double)
    S = psd_sqrt(C)
    assert root_error(C, S).max() < 1e-10 and torch.allclose(S, S.transpose(-1, -2))
    assert torch.autograd.gradcheck(lambda c: psd_sqrt(c, 1e-3), (C.clone().requires_grad_(True),))


def test_default_is_not_a_square_root_and_true_roots_are():
    """What the issue reported: today's C is not symmetric, has eigenvalues with negative real part, and
    3 Newton-Schulz steps are far from a root; gram_eigh pools a PSD C and roots it exactly."""
    torch.manual_seed(0)
    x = torch.randn(16, 2, 3, 16, 32)
    errs = {}
    for root in ("newton_schulz", "sym_eigh", "gram_eigh"):
        p = CovarianceProbe(32, h=8, p=8, root=root)
        with torch.no_grad():
            C = p.covariance(x)
            errs[root] = root_error(C, CovarianceBackbone.forward(p, x)).median().item()
        if root == "newton_schulz":
            assert not torch.allclose(C, C.transpose(1, 2))
            assert (torch.linalg.eigvals(C).real.min(-1).values < 0).float().mean() > 0.5
        out = p(x)
        out.sum().backward()
        assert all(torch.isfinite(q.grad).all() for q in p.parameters() if q.grad is not None)
    assert errs["newton_schulz"] > 0.5 and errs["gram_eigh"] < 1e-5
    # even on SPD input with spread eigenvalues, 3 steps are not a root; many steps are
    Q, _ = torch.linalg.qr(torch.randn(32, 32, dtype=torch.double))
    C = (Q * torch.logspace(-3, 0, 32, dtype=torch.double)) @ Q.T
    assert root_error(C, newton_schulz_sqrt(C, 3)) > 0.05 and root_error(C, newton_schulz_sqrt(C, 30)) < 1e-4


def test_root_saved_in_card(tmp_path):
    p = CovarianceProbe(8, h=4, p=4, root="gram_eigh")
    assert p.hparams()["root"] == "gram_eigh"
    assert "root" not in CovarianceProbe(8, h=4, p=4).hparams()  # EVEE default: card unchanged
    save_probe(tmp_path / "p.safetensors", p, {})
    q, card = load_probe(tmp_path / "p.safetensors")
    assert q.root == "gram_eigh"
    x = torch.randn(3, 2, 3, 5, 8)
    assert torch.allclose(p.eval()(x), q(x))
