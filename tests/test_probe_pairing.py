"""The probes read the same input from both EVEE store layouts of the genomic recipe,
indels included, and the ``pairing`` choice works.

With ``recipe="genomic"``, ``view="evee"`` stores ``acts [N,2,3,K,d]`` (var_same,
ref_same, ref_aligned; index 2 is called REF_CROSS in the probe code) and
``view="evee_diff"`` stores ``diff [N,2,K,d]`` = var_same − ref_aligned. The probes
pair that recipe's ``acts`` as var_same − ref_aligned by default (``pairing="genomic"``),
so both layouts give the same features and scores. Downstream of an indel ref_same and
ref_aligned differ, so ``pairing="index"`` (var_same − ref_same) gives other inputs
there; it needs ``acts`` (a genomic ``evee_diff`` store cannot give it).
(The evee recipe and recipe checks: tests/test_probe_recipe.py.)
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file, save_file
from test_harvest import (  # same variant set: 2 SNVs, an insertion, a deletion
    KW,
    LAYER,
    _variants,
)

from biointerp.genome import Genome
from biointerp.harvest import harvest
from biointerp.models import StripedHyenaModel, random_model, tiny_config
from biointerp.probes.artifact import CARD_KEY, load_probe, read_card, save_probe
from biointerp.probes.covariance import (
    CovarianceProbe,
    MultiHeadCovarianceProbe,
    evee_diffs,
    to_multihead,
)
from biointerp.probes.linear import LinearProbe, featurize, fit_linear
from biointerp.probes.training import InMemorySource, predict, train_probe

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
            out[view, dt] = harvest(model, genome, v, LAYER, view=view, recipe="genomic", store=d / f"{view}_{dt}".replace(".", "_"),
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


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_index_pairing_is_var_same_minus_ref_same(stores, dtype):
    """pairing="index": acts[:, :, 0] - acts[:, :, 1] (features, covariance and linear outputs,
    predict through the store); equal to genomic on SNVs, different on indel rows."""
    v = stores["variants"]
    ids, acts, pos = _read(stores["evee", dtype], "acts")
    mask = pos >= 0
    a32 = acts.float()
    hand = a32[:, :, 0] - a32[:, :, 1]  # [N, 2, K, d]: var_same - ref_same per direction
    fi, bi = evee_diffs(acts, "index")
    assert torch.equal(fi, hand[:, 0]) and torch.equal(bi, hand[:, 1])
    fg, bg = evee_diffs(acts, "genomic")
    assert torch.equal(fg, a32[:, 0, 0] - a32[:, 0, 2]) and torch.equal(bg, a32[:, 1, 0] - a32[:, 1, 2])
    indels = _indel_rows(v, ids)
    snv = np.setdiff1d(np.arange(len(ids)), indels)
    assert len(indels) >= 2 and len(snv) >= 2
    for i in indels:  # downstream of the allele (fwd) the two pairings compare different bases
        m = mask[i, 0]
        assert (fi[i][m] - fg[i][m]).abs().max() > 1e-2
    torch.testing.assert_close(fi[snv], fg[snv])
    torch.testing.assert_close(bi[snv], bg[snv])

    # linear features: masked mean over positions of the hand diff, both directions concatenated
    w = mask.float().unsqueeze(-1)
    want = torch.cat([(hand[:, j] * w[:, j]).sum(1) / w[:, j].sum(1).clamp_min(1) for j in (0, 1)], -1)
    torch.testing.assert_close(featurize(acts, "evee_mean_diff", mask, "index"), want)

    # probes built with pairing="index" on acts == the same weights (genomic) on the hand diff
    cov_g, lin_g = _probes()
    cov_i = CovarianceProbe(D, h=6, p=8, n_out=2, pairing="index").eval()
    cov_i.load_state_dict(cov_g.state_dict())
    lin_i = LinearProbe(2 * D, 1, "evee_mean_diff", pairing="index").eval()
    lin_i.load_state_dict(lin_g.state_dict())
    assert cov_i.hparams()["pairing"] == "index" and lin_i.hparams()["pairing"] == "index"
    assert cov_g.hparams()["pairing"] == "genomic" and lin_g.hparams()["pairing"] == "genomic"
    with torch.no_grad():
        for pi, pg in ((cov_i, cov_g), (lin_i, lin_g)):
            oi, og = pi(acts, mask), pg(hand, mask)
            torch.testing.assert_close(oi, og, atol=1e-5, rtol=0)
            o_gen = pg(acts, mask)
            for i in indels:
                assert (oi[i] - o_gen[i]).abs().max() > 1e-3
            torch.testing.assert_close(oi[snv], o_gen[snv], atol=1e-5, rtol=0)
    # a multi-head probe keeps the pairing (to_multihead too)
    mh = to_multihead(cov_i)
    assert mh.pairing == "index" and mh.hparams()["pairing"] == "index"
    with torch.no_grad():
        torch.testing.assert_close(mh(acts, mask)["pathogenicity"], cov_i(acts, mask))

    # end to end: predict() on the acts store with index probes == genomic probes on a hand-made diff source
    hand_src = InMemorySource(ids, {"diff": hand, "positions": pos})
    for pi, pg in ((cov_i, cov_g), (lin_i, lin_g)):
        a = predict(pi, stores["evee", dtype].path, "acts", ids, HEADS)
        b = predict(pg, hand_src, "diff", ids, HEADS)
        np.testing.assert_allclose(a["pathogenicity"], b["pathogenicity"], atol=1e-6, rtol=0)

    # fit_linear takes the pairing too
    y = np.arange(len(ids)) % 2
    fi_ = fit_linear(acts, y, features="evee_mean_diff", pairing="index")
    fg_ = fit_linear(hand, y, features="evee_mean_diff")
    assert fi_.pairing == "index"
    torch.testing.assert_close(fi_.mean, fg_.mean)


def test_index_pairing_on_evee_diff_store_is_a_clear_error(stores):
    st = stores["evee_diff", torch.float32]
    ids, diff, _ = _read(st, "diff")
    # which diff a diff tensor holds is the store's recipe (manifest): checked at the store level
    with pytest.raises(ValueError, match="unknown pairing"):
        evee_diffs(diff, "same")
    with pytest.raises(ValueError, match="unknown pairing"):
        CovarianceProbe(D, pairing="cross")
    cov = CovarianceProbe(D, h=6, p=8, n_out=2, pairing="index").eval()
    with pytest.raises(ValueError, match="only holds pairing='genomic' diffs"):
        predict(cov, st.path, "diff", ids, HEADS)
    labels = pd.DataFrame({"label": np.arange(len(ids)) % 2}, index=pd.Index(ids, name="variant_id"))
    split = pd.Series(["train"] * len(ids), index=labels.index)
    for kind in ("covariance", "linear"):
        with pytest.raises(ValueError, match=r"only holds pairing='genomic' diffs.*--view evee"):
            train_probe(st.path, labels, split, kind=kind, tensor="diff", pairing="index",
                        hparams={"h": 4, "p": 4}, max_epochs=1)
    # genomic (the default) trains on the same store
    r = train_probe(st.path, labels, split, kind="linear", tensor="diff", max_epochs=1)
    assert r.probe.pairing == "genomic" and r.info["input"]["pairing"] == "genomic"
    # and index pairing is refused for pooled inputs, which have no per-position views
    with pytest.raises(ValueError, match="pairing='index'"):
        evee_diffs(torch.zeros(3, 2, D), "index")


def test_pairing_round_trips_through_the_probe_file(tmp_path):
    """hparams.pairing is saved and rebuilt; cards without it load as genomic."""
    g = torch.Generator().manual_seed(0)
    acts = torch.randn(5, 2, 3, 4, D, generator=g)
    mods = [CovarianceProbe(D, 4, 6, 2, pairing="index"), LinearProbe(2 * D, 1, "evee_mean_diff", pairing="index"),
            MultiHeadCovarianceProbe(D, {"a": {"kind": "binary"}}, h=4, p=6, pairing="index")]
    for i, m in enumerate(mods):
        path = save_probe(tmp_path / f"p{i}.safetensors", m, {"input": {"tensor": "acts", "pair": False,
                                                                        "pairing": "index"}})
        m2, card = load_probe(path)
        assert m2.pairing == "index" and card["hparams"]["pairing"] == "index"
        with torch.no_grad():
            o1, o2 = m.eval()(acts), m2(acts)
        for a, b in zip(o1.values() if isinstance(o1, dict) else [o1], o2.values() if isinstance(o2, dict) else [o2]):
            torch.testing.assert_close(a, b)

        # an older card without the key -> genomic (the behaviour before the option existed)
        old = dict(card)
        old["hparams"] = {k: v for k, v in card["hparams"].items() if k != "pairing"}
        old["input"] = {"tensor": "acts", "pair": False}
        save_file(load_file(str(path)), str(tmp_path / "old.safetensors"), metadata={CARD_KEY: json.dumps(old)})
        m3, _ = load_probe(tmp_path / "old.safetensors")
        assert m3.pairing == "genomic"
        # a card recording it only under input -> that pairing
        old["input"]["pairing"] = "index"
        save_file(load_file(str(path)), str(tmp_path / "old2.safetensors"), metadata={CARD_KEY: json.dumps(old)})
        assert load_probe(tmp_path / "old2.safetensors")[0].pairing == "index"
        assert read_card(tmp_path / "old2.safetensors")["input"]["pairing"] == "index"
