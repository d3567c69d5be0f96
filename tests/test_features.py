"""Features: training on streamed activations, labels, explanations and interventions (tiny, fast)."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from sklearn.metrics import roc_auc_score

from biointerp.features.explain import explain_variants, format_explanation, matching_share
from biointerp.features.intervene import edit_output, generate, latent_edit, log_probs_with
from biointerp.features.label import (class_masks, encode_genome, feature_table, label_latents,
                                      read_annotations, sparse_auroc)
from biointerp.features.sae import SparseAutoencoder
from biointerp.features.train import (ModelActivations, StoreActivations, TensorRows, _ShuffleBuffer, evaluate_sae,
                                      train_sae)
from biointerp.models import StripedHyenaModel, random_model, tiny_config
from biointerp.store import ActivationStore
from biointerp.synth import PRESETS, SynthConfig, generate_genome, make_variants, write_genome

LAYER = "blocks.4"


@pytest.fixture(scope="module")
def tiny():
    model = StripedHyenaModel(random_model(tiny_config(hidden_size=16, num_layers=8, num_attention_heads=2,
                                                       hcm_filter_length=16), seed=3))
    genome = generate_genome(SynthConfig(**{**PRESETS["tiny"], "contig_length": 12_000}, seed=5))
    return model, genome


@pytest.fixture(scope="module")
def trained(tiny):
    model, genome = tiny
    src = ModelActivations(model, {"synth1": genome.contigs["synth1"]}, LAYER, window=256, batch_size=256,
                           buffer_tokens=2048, seed=0)
    sae, report = train_sae(src, 16, 64, 4, steps=60, lr=3e-3, dead_tokens=4000)
    return sae, report


def test_shuffle_buffer_is_bounded_and_loses_nothing():
    buf = _ShuffleBuffer(capacity=100, batch_size=16, seed=0)
    seen, peak = [], 0
    for i in range(0, 1000, 30):
        seen += [b for b in buf.push(torch.arange(i, min(i + 30, 1000))[:, None].float())]
        peak = max(peak, buf.n)
    seen += list(buf.flush())
    assert peak < 100 + 30
    assert sorted(torch.cat(seen)[:, 0].long().tolist()) == list(range(1000))


def test_training_reduces_error_and_tracks_dead_latents(tiny, trained):
    model, genome = tiny
    sae, rep = trained
    h = rep["history"]
    assert rep["steps"] == 60 and 59 * 256 <= rep["tokens"] <= 60 * 256  # a pass may end in a short batch
    assert h[-1]["explained_variance"] > h[0]["explained_variance"] + 0.1
    assert rep["final"]["l0"] == pytest.approx(4.0)  # batch-top-k: k per token on average
    assert 0 <= rep["dead_latents"] <= 64 and "dead_fraction" in h[-1]
    seqs = [genome.contigs["synth2"][i:i + 256] for i in range(0, 1024, 256)]
    ev = evaluate_sae(model, sae, LAYER, seqs)
    assert ev["clean_loss"] <= ev["spliced_loss"] + 1e-6 or ev["zero_loss"] != ev["clean_loss"]
    assert np.isfinite(ev["loss_recovered"]) and ev["explained_variance"] > 0


def test_plain_engine_matches_lightning(tiny):
    rows = torch.randn(2048, 16, generator=torch.Generator().manual_seed(0)) * 3 + 1
    a, ra = train_sae(TensorRows(rows, 256), 16, 32, 4, steps=15, lr=1e-3, engine="plain")
    b, rb = train_sae(TensorRows(rows, 256), 16, 32, 4, steps=15, lr=1e-3, engine="lightning")
    assert ra["steps"] == rb["steps"] == 15 and ra["tokens"] == rb["tokens"] == 15 * 256
    for name, t in a.state_dict().items():
        torch.testing.assert_close(t, b.state_dict()[name], rtol=1e-4, atol=1e-5)
    c, _ = train_sae(TensorRows(rows, 256), 16, 32, 4, steps=2, engine="plain", standardize=True)
    torch.testing.assert_close(c.input_scale, 1 / next(iter(TensorRows(rows, 256))).std(0))  # from the first batch
    with pytest.raises(ValueError, match="no batches"):
        train_sae(TensorRows(rows[:10], 256), 16, 32, 4, steps=2, engine="plain")


def test_store_stream_flattens_and_drops_padding(tmp_path):
    st = ActivationStore.create(tmp_path / "st", {"model": "x", "d": 8})
    acts = torch.randn(5, 2, 3, 8)
    acts[:, :, :, :][:, 1, 2] = 0.0  # padding rows
    st.write_shard([f"v{i}" for i in range(5)], {"acts": acts, "positions": torch.zeros(5, 3)})
    src = StoreActivations(tmp_path / "st", batch_size=7, buffer_tokens=16)
    rows = torch.cat(list(src))
    assert src.name == "acts" and rows.shape == (5 * 5, 8)
    with pytest.raises(ValueError, match="no tensor 'nope'"):
        StoreActivations(tmp_path / "st", name="nope")


def test_sparse_auroc_is_exact():
    rng = np.random.default_rng(0)
    dense = rng.random((400, 6)) * (rng.random((400, 6)) < 0.2)
    dense[:, 5] = np.round(dense[:, 5], 1)  # ties among nonzeros
    Y = rng.random((400, 3)) < 0.3
    got = sparse_auroc(sp.csr_matrix(dense), Y)
    want = np.array([[roc_auc_score(Y[:, c], dense[:, j]) for c in range(3)] for j in range(6)])
    np.testing.assert_allclose(got, want, atol=1e-12)


def test_annotation_readers_agree(tiny, tmp_path):
    _, genome = tiny
    paths = write_genome(genome, tmp_path)
    gff, bed = read_annotations(paths["gff3"]), read_annotations(paths["bed"])
    assert len(gff) == len(bed) == len(genome.elements)
    assert (gff[["chrom", "start", "end", "type"]].to_numpy() == bed[["chrom", "start", "end", "type"]].to_numpy()).all()
    from Bio.Seq import Seq
    from Bio.SeqFeature import FeatureLocation, SeqFeature
    from Bio.SeqRecord import SeqRecord
    from Bio import SeqIO
    rec = SeqRecord(Seq(genome.contigs["synth1"][:500]), id="synth1", annotations={"molecule_type": "DNA"})
    rec.features.append(SeqFeature(FeatureLocation(9, 20, strand=-1), type="tRNA", qualifiers={"product": ["tRNA-Ala"]}))
    SeqIO.write(rec, tmp_path / "x.gb", "genbank")
    gb = read_annotations(tmp_path / "x.gb")
    assert gb.iloc[0].tolist() == ["synth1", 10, 20, "tRNA", "-", "tRNA-Ala"]
    with pytest.raises(ValueError, match="unknown annotation format"):
        (tmp_path / "a.txt").write_text("x")
        read_annotations(tmp_path / "a.txt")


def test_labels_find_a_planted_latent(tiny, trained):
    model, genome = tiny
    sae, _ = trained
    X, obs = encode_genome(model, sae, {"synth2": genome.contigs["synth2"]}, LAYER, window=256, skip=32,
                           regions={"synth2": (1, 4000)})
    assert X.shape == (4000, 64) and list(obs["pos"]) == list(range(1, 4001))
    # a planted latent equal to the exon mask must get AUROC 1 and precision 1
    Y = class_masks(genome.elements, obs, ["exon"])
    X2 = sp.hstack([X, sp.csr_matrix(Y[:, :1].astype(np.float32))]).tocsr()
    scores = label_latents(X2, obs, genome.elements, classes=["exon", "intron"])
    planted = scores[(scores["latent"] == 64) & (scores["class"] == "exon")].iloc[0]
    assert planted["auroc"] == 1.0 and planted["precision_top"] == 1.0 and planted["element_auroc"] > 0.9
    assert planted["f1"] == 1.0
    ad = feature_table(X2, obs, scores)
    assert sp.issparse(ad.X) and ad.var.loc["latent_64", "label"] == "exon"
    assert ad.var["firing_rate"].between(0, 1).all()


def test_unedited_pass_is_exact_and_edits_act(tiny, trained):
    model, genome = tiny
    sae, _ = trained
    ids, _ = model.tokenize([genome.contigs["synth2"][:200], genome.contigs["synth2"][300:500]])
    clean = model.forward(ids).logits
    h = model.forward(ids, layers=[LAYER]).activations[LAYER]
    from biointerp.features.intervene import encode_rows
    silent = int((encode_rows(sae, h) > 0).sum((0, 1)).argmin())
    for fn in (latent_edit(sae, 0, "none"), latent_edit(sae, 0, "steer", 0.0), latent_edit(sae, silent, "ablate")):
        with edit_output(model, LAYER, fn):
            assert torch.equal(model.forward(ids).logits, clean)
    busy = int((encode_rows(sae, h) > 0).sum((0, 1)).argmax())
    with edit_output(model, LAYER, latent_edit(sae, busy, "ablate")):
        assert not torch.allclose(model.forward(ids).logits, clean)
    with pytest.raises(ValueError, match="out of range"):
        latent_edit(sae, 999)
    seqs = [genome.contigs["synth2"][:64]] * 2
    a = generate(model, seqs, 8, seed=1)
    assert a == generate(model, seqs, 8, LAYER, latent_edit(sae, 0, "none"), seed=1)
    assert all(len(s) == 8 and set(s) <= set("ACGT") for s in a)
    lp = log_probs_with(model, seqs, LAYER, latent_edit(sae, busy, "clamp", 5.0))
    assert lp.shape == (2, 63) and np.isfinite(lp).all()


def test_explanations_side_table(tiny, trained):
    model, genome = tiny
    sae, _ = trained
    v = make_variants(genome, per_class=3)
    v = v[(v["chrom"] == "synth1") & (v["ref"].str.len() == 1) & (v["alt"].str.len() == 1)].head(8).copy()
    bad = v.iloc[0].copy()
    bad["variant_id"], bad["ref"] = "bad", "N"
    v = pd.concat([v, bad.to_frame().T], ignore_index=True)
    labels = pd.DataFrame({"label": ["exon"] * 64, "score": 0.8}, index=range(64))
    e = explain_variants(model, sae, LAYER, genome.contigs, v, labels=labels, top=3, window=128, offset=96)
    assert set(e["variant_id"]) == set(v["variant_id"])  # nothing dropped
    assert e.loc[e["variant_id"] == "bad", "status"].tolist() == ["ref_mismatch"]
    ok = e[e["status"] == "ok"]
    assert (ok.groupby("variant_id")["rank"].max() == 3).all()
    assert (ok["position"] >= ok["variant_id"].map(v.set_index("variant_id")["pos"])).all()  # causal: at/after
    assert "top 3 latents" in format_explanation(e, v["variant_id"].iat[1])
    share = matching_share(e, v.assign(consequence="splice_donor"), top=3,
                           matching={"splice_donor": ("exon",)})
    assert share["share"].iat[0] == pytest.approx(8 / 9)


def test_rankdata_matches_scipy():
    from scipy.stats import rankdata as scipy_rank

    from biointerp.features.label import rankdata
    a = np.random.default_rng(1).integers(0, 7, 300).astype(float)
    np.testing.assert_array_equal(rankdata(a), scipy_rank(a))
