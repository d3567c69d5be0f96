"""The probes read the same input from both EVEE store layouts, indels included.

``view="evee"`` stores ``acts [N,2,3,K,d]`` (var_same, ref_same, ref_cross);
``view="evee_diff"`` stores ``diff [N,2,K,d]`` = var_same − ref_cross. The probes
pair ``acts`` as var_same − ref_cross too, so both layouts give the same features
and scores. Downstream of an indel ref_same and ref_cross differ, so the old
pairing (var_same − ref_same) would fail these checks.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_harvest import (  # same variant set: 2 SNVs, an insertion, a deletion
    KW,
    LAYER,
    _variants,
)

from biointerp.genome import Genome
from biointerp.harvest import harvest
from biointerp.models import StripedHyenaModel, random_model, tiny_config
from biointerp.probes.covariance import CovarianceProbe, evee_diffs
from biointerp.probes.linear import LinearProbe, featurize
from biointerp.probes.training import predict

D = 16
HEADS = {"pathogenicity": {"kind": "binary"}}


@pytest.fixture(scope="module")
def stores(brca1_fasta, tmp_path_factory):
    """Both layouts, fp16 (the default) and fp32, harvested from one set of variants."""
    model = StripedHyenaModel(random_model(tiny_config(hidden_size=D, num_layers=8, num_attention_heads=2), seed=11))
    genome = Genome(brca1_fasta)
    v = _variants(genome)
    d = tmp_path_factory.mktemp("pairing")
    out = {"variants": v}
    for dt in (torch.float16, torch.float32):
        for view in ("evee", "evee_diff"):
            out[view, dt] = harvest(model, genome, v, LAYER, view=view, store=d / f"{view}_{dt}".replace(".", "_"),
                                    storage_dtype=dt, progress=False, **KW)
    return out


def _read(st, name):
    ids, t = st.read([name, "positions"])
    return ids, t[name], t["positions"]


def _indel_rows(v, ids):
    r = v.set_index("variant_id").loc[ids]
    return np.flatnonzero((r["ref"].str.len() != r["alt"].str.len()).to_numpy())


def _probes(seed=0):
    torch.manual_seed(seed)
    cov = CovarianceProbe(D, h=6, p=8, n_out=2).eval()
    lin = LinearProbe(2 * D, 1, "evee_mean_diff").eval()
    with torch.no_grad():
        lin.linear.weight.normal_()
        lin.linear.bias.normal_()
    return cov, lin


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.float16, None)])
def test_acts_and_diff_stores_give_same_probe_input(stores, dtype, tol):
    v = stores["variants"]
    ids_a, acts, pos_a = _read(stores["evee", dtype], "acts")
    ids_d, diff, pos_d = _read(stores["evee_diff", dtype], "diff")
    assert ids_a == ids_d and torch.equal(pos_a, pos_d)
    indels = _indel_rows(v, ids_a)
    rows = v.set_index("variant_id").loc[ids_a].iloc[indels]
    grow = rows.alt.str.len() - rows.ref.str.len()
    assert (grow > 0).any() and (grow < 0).any()  # an insertion and a deletion
    mask = pos_a >= 0
    a32 = acts.float()
    # fp16 storage: each stored value carries a rounding error of up to 2^-11 relative; the
    # diff from acts is a difference of two rounded values, the stored diff one rounded value
    scale = float(a32.abs().max())
    atol = tol if tol is not None else 3 * scale * 2.0 ** -11
    rtol = tol if tol is not None else 0.0

    # the pairing itself: var_same - ref_cross, masked padding included
    fa, ba = evee_diffs(acts)
    fd, bd = evee_diffs(diff)
    torch.testing.assert_close(fa, fd, atol=atol, rtol=rtol)
    torch.testing.assert_close(ba, bd, atol=atol, rtol=rtol)
    torch.testing.assert_close(fa, a32[:, 0, 0] - a32[:, 0, 2])

    # ... which is not var_same - ref_same for indels (downstream of the allele, fwd)
    old_fwd = a32[:, 0, 0] - a32[:, 0, 1]
    m = mask[:, 0]
    for i in indels:
        assert (old_fwd[i][m[i]] - fd[i][m[i]].float()).abs().max() > 10 * atol
    snv = np.setdiff1d(np.arange(len(ids_a)), indels)
    torch.testing.assert_close(old_fwd[snv], fa[snv])  # SNVs: ref_same == ref_cross

    # probe outputs: fp16 rounding moves them by ~1e-3 here; the old pairing moves the
    # indel rows by 0.08 to 1.3 (covariance and linear logits, covariance matrix entries)
    otol = 1e-5 if tol is not None else 5e-3
    cov, lin = _probes()
    with torch.no_grad():
        # covariance probe: C, S and logits, with and without the padding mask
        for mk in (mask, None):
            for f in (cov.covariance, cov.forward, cov):
                torch.testing.assert_close(f(acts, mk), f(diff, mk), atol=otol, rtol=0)
        # linear probe: evee_mean_diff features and logits
        torch.testing.assert_close(featurize(acts, "evee_mean_diff", mask), featurize(diff, "evee_mean_diff", mask),
                                   atol=atol, rtol=rtol)
        torch.testing.assert_close(lin(acts, mask), lin(diff, mask), atol=otol, rtol=0)
        # the old pairing (var_same - ref_same) gives other probe outputs on the indel rows only
        old = a32[:, :, 0] - a32[:, :, 1]
        for f in (cov.covariance, cov, lin):
            o, n = f(old, mask), f(diff, mask)
            for i in indels:
                assert (o[i] - n[i]).abs().max() > 5 * otol
            torch.testing.assert_close(o[snv], n[snv], atol=otol, rtol=0)

    # end to end through the store reader (predict applies the positions mask)
    for probe in (cov, lin):
        pa = predict(probe, stores["evee", dtype].path, "acts", ids_a, HEADS)
        pd_ = predict(probe, stores["evee_diff", dtype].path, "diff", ids_a, HEADS)
        np.testing.assert_allclose(pa["pathogenicity"], pd_["pathogenicity"], atol=otol, rtol=0)
