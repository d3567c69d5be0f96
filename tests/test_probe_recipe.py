"""Probes know the harvest recipe of their input: EVEE's unified diff, recorded in the card,
and a probe trained on one recipe refuses a store written by another (legacy cards included)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file, save_file

from biointerp.cli import main
from biointerp.genome import Genome
from biointerp.harvest import harvest
from biointerp.models import StripedHyenaModel, random_model, tiny_config
from biointerp.probes.artifact import CARD_KEY, load_probe, save_probe
from biointerp.probes.covariance import CovarianceProbe
from biointerp.probes.training import predict, train_probe
from test_harvest_evee import _variants

KW = dict(upstream=64, downstream=32, K=12, fixed=4)
LAYER = "blocks.5"
D = 16
HEADS = {"pathogenicity": {"kind": "binary"}}


@pytest.fixture(scope="module")
def stores(brca1_fasta, tmp_path_factory):
    model = StripedHyenaModel(random_model(tiny_config(hidden_size=D, num_layers=8, num_attention_heads=2), seed=3))
    genome = Genome(brca1_fasta)
    v = _variants(genome).iloc[:-1]
    d = tmp_path_factory.mktemp("recipe")
    out = {"variants": v, "dir": d}
    for recipe in ("evee", "genomic"):
        for view in ("evee", "evee_diff"):
            out[recipe, view] = harvest(model, genome, v, LAYER, view=view, recipe=recipe, store=d / f"{recipe}_{view}",
                                        storage_dtype=torch.float32, progress=False, **KW)
    ids = v["variant_id"].tolist()
    out["labels"] = pd.DataFrame({"label": np.arange(len(ids)) % 2}, index=pd.Index(ids, name="variant_id"))
    out["split"] = pd.Series(["train"] * len(ids), index=out["labels"].index)
    return out


def test_unified_diff_probe_on_evee_store(stores):
    st = stores["evee", "evee"]
    r = train_probe(st.path, stores["labels"], stores["split"], kind="covariance_concat", max_epochs=1,
                    hparams={"input_scale": 1.0})
    p = r.probe
    assert r.info["input"] == {"tensor": "acts", "pair": False, "pairing": "index", "recipe": "evee",
                               "layout": "unified_diff"}
    # EVEE's d_hidden / d_probe
    assert (p.h, p.p, p.concat, p.pairing, p.input_recipe) == (64, 256, True, "index", "evee")
    # the probe's input is EVEE's utils.unified_diff: [B, K, 2d] = (var_same - ref_same) fwd ++ bwd, all K rows
    ids, t = st.read(["acts", "positions"])
    a = t["acts"]
    x = torch.cat([a[:, 0, 0] - a[:, 0, 1], a[:, 1, 0] - a[:, 1, 1]], dim=-1)
    assert x.shape == (len(ids), KW["K"], 2 * D)
    left, right = p.proj_left(x), p.proj_right(x)
    want = left.transpose(1, 2) @ right / KW["K"] + p.eps * torch.eye(p.h)
    with torch.no_grad():
        torch.testing.assert_close(p.covariance(a, t["positions"] >= 0), want, rtol=1e-4, atol=1e-5)
    # the evee-recipe diff store holds the same input
    sd = stores["evee", "evee_diff"]
    pa = predict(p, st.path, "acts", ids, HEADS)
    pd_ = predict(p, sd.path, "diff", ids, HEADS)
    np.testing.assert_allclose(pa["pathogenicity"], pd_["pathogenicity"], rtol=1e-5, atol=1e-6)
    # ... and a genomic-recipe store is refused
    for view, tensor in (("evee", "acts"), ("evee_diff", "diff")):
        with pytest.raises(ValueError, match="'evee' harvest recipe.*'genomic' recipe"):
            predict(p, stores["genomic", view].path, tensor, ids, HEADS)


def test_pairings_that_a_recipe_cannot_give_are_refused(stores):
    lab, split = stores["labels"], stores["split"]
    with pytest.raises(ValueError, match="view 2 is ref_cross, the other strand"):
        train_probe(stores["evee", "evee"].path, lab, split, kind="covariance", pairing="genomic", max_epochs=1)
    with pytest.raises(ValueError, match="only holds pairing='index'"):
        train_probe(stores["evee", "evee_diff"].path, lab, split, kind="linear", tensor="diff", pairing="genomic")
    with pytest.raises(ValueError, match="different harvest recipes"):
        train_probe([stores["evee", "evee"].path, stores["genomic", "evee"].path], lab, split, kind="linear")
    g = train_probe(stores["genomic", "evee"].path, lab, split, kind="linear")
    assert g.info["input"]["recipe"] == "genomic" and g.probe.pairing == "genomic"


def test_cards_record_the_recipe_and_legacy_cards_are_genomic(stores, tmp_path):
    st_evee, st_gen = stores["evee", "evee"], stores["genomic", "evee"]
    ids = stores["variants"]["variant_id"].tolist()
    r = train_probe(st_evee.path, stores["labels"], stores["split"], kind="covariance_concat", max_epochs=1,
                    hparams={"h": 4, "p": 6})
    path = save_probe(tmp_path / "evee.safetensors", r.probe, {"input": r.info["input"], "heads": HEADS})
    m, card = load_probe(path)
    assert m.input_recipe == "evee" and m.pairing == "index" and card["input"]["layout"] == "unified_diff"
    predict(m, st_evee.path, "acts", ids, HEADS)
    runner = CliRunner()
    res = runner.invoke(main, ["probe", "apply", "--probe", str(path), "--store", str(st_gen.path),
                               "--out", str(tmp_path / "s.parquet")])
    assert res.exit_code != 0 and "recipe" in res.output and "Error" in res.output
    # a card written before recipes existed (no input.recipe) is a genomic-recipe probe, explicitly
    cov = CovarianceProbe(D, h=4, p=6, n_out=2)
    old = save_probe(tmp_path / "old.safetensors", cov, {"input": {"tensor": "acts", "pair": False,
                                                                   "pairing": "genomic"}, "heads": HEADS})
    m_old, _ = load_probe(old)
    assert m_old.input_recipe == "genomic"
    predict(m_old, st_gen.path, "acts", ids, HEADS)
    with pytest.raises(ValueError, match="'genomic' harvest recipe"):
        predict(m_old, st_evee.path, "acts", ids, HEADS)
    # EVEE's own file (no card): recipe evee, pairing index (EVEE's unified_diff)
    sd = load_file(str(path))
    save_file({k: v for k, v in sd.items() if k != "_eye"}, str(tmp_path / "evee_file.safetensors"))
    m_e, card_e = load_probe(tmp_path / "evee_file.safetensors", kind="covariance")
    assert (m_e.input_recipe, m_e.pairing, m_e.concat) == ("evee", "index", True)
    with pytest.raises(ValueError, match="recipe"):
        predict(m_e, st_gen.path, "acts", ids, HEADS)
    assert json.loads(load_card_text(path))["input"]["recipe"] == "evee"


def load_card_text(path) -> str:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return f.metadata()[CARD_KEY]
