"""The ``evee`` harvest recipe equals EVEE's public harvest, re-implemented plainly.

``biointerp.evee_plain`` is written from EVEE's published semantics with four
full passes per variant and nothing shared. The recipe (reference passes shared
within a window) must give bitwise the same tensors, and with prefix reuse
(batched suffix passes) the same positions and the same tensors up to float
rounding, on SNVs, a multi-allelic site, insertions, deletions, a complex indel
and variants near both ends of the reference record (windows shifted, one
direction cut short).
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from biointerp.evee_plain import evee_plain
from biointerp.genome import Genome
from biointerp.harvest import harvest, store_recipe
from biointerp.models import StripedHyenaModel, random_model, tiny_config
from biointerp.store import ActivationStore, StoreError

KW = dict(upstream=96, downstream=48, K=24, fixed=6)
LAYER = "blocks.5"
FIRST, LAST = 41100001, 41300000  # the BRCA1 region record


@pytest.fixture(scope="module")
def model():
    return StripedHyenaModel(random_model(tiny_config(hidden_size=16, num_layers=8, num_attention_heads=2), seed=11))


@pytest.fixture(scope="module")
def genome(brca1_fasta):
    return Genome(brca1_fasta)


def _variants(g: Genome) -> pd.DataFrame:
    def other(b, skip=()):
        return next(c for c in "ACGT" if c != b and c not in skip)

    rows = []
    p = 41245003
    b = g.fetch("chr17", p, p)
    rows += [("snv", p, b, other(b)), ("multiallelic", p, b, other(b, other(b)))]
    s = g.fetch("chr17", p + 9, p + 9)
    rows.append(("insertion", p + 9, s, s + "GAT"))
    s = g.fetch("chr17", p + 12, p + 14)
    rows.append(("deletion", p + 12, s, s[0]))
    s = g.fetch("chr17", p + 30, p + 35)
    rows.append(("complex", p + 30, s, s[0] + "T"))
    b = g.fetch("chr17", FIRST + 2, FIRST + 2)
    rows.append(("start_snv", FIRST + 2, b, other(b)))
    s = g.fetch("chr17", FIRST + 4, FIRST + 6)
    rows.append(("start_deletion", FIRST + 4, s, s[0]))
    b = g.fetch("chr17", LAST - 2, LAST - 2)
    rows.append(("end_snv", LAST - 2, b, other(b)))
    s = g.fetch("chr17", LAST - 10, LAST - 10)
    rows.append(("end_insertion", LAST - 10, s, s + "CC"))
    s = g.fetch("chr17", LAST - 5, LAST - 1)
    rows.append(("end_deletion", LAST - 5, s, s[0]))
    b = g.fetch("chr17", p + 50, p + 50)
    rows.append(("mismatch", p + 50, other(b), b))
    v = pd.DataFrame(rows, columns=["kind", "pos", "ref", "alt"])
    v.insert(0, "chrom", "chr17")
    v["variant_id"] = v.chrom + ":" + v.pos.astype(str) + ":" + v.ref + ":" + v.alt
    v["status"] = "ok"
    return v


@pytest.fixture(scope="module")
def runs(model, genome, tmp_path_factory):
    v = _variants(genome)
    d = tmp_path_factory.mktemp("evee")
    plain = evee_plain(model, genome, v, LAYER, **KW)
    st32 = harvest(model, genome, v, LAYER, view="evee", store=d / "s32", storage_dtype=torch.float32,
                   shard_size=3, chunk_rows=4, progress=False, **KW)
    st16 = harvest(model, genome, v, LAYER, view="evee", store=d / "s16", progress=False, **KW)
    reuse = harvest(model, genome, v, LAYER, view="evee", store=d / "reuse", storage_dtype=torch.float32,
                    reuse_prefix=True, shard_size=3, chunk_rows=4, batch_size=3, progress=False, **KW)
    return v, plain, st32, st16, d, reuse


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def test_evee_recipe_equals_plain_evee(runs):
    """Default (no prefix reuse): every tensor bitwise equal; the fp16 store is EVEE's .half()."""
    v, (ids, base), st, st16, _, _ = runs
    assert st.index["variant_id"].tolist() == v["variant_id"].tolist()
    assert st.index["status"].tolist() == ["ok"] * (len(v) - 1) + ["ref_mismatch"]
    got_ids, got = st.read()
    assert got_ids == ids == v["variant_id"].tolist()[:-1]
    for k in ("positions", "acts", "mean", "loss_diff"):
        assert torch.equal(got[k], base[k]), k
    _, t16 = st16.read()
    assert t16["acts"].dtype == torch.float16 and t16["mean"].dtype == torch.float32
    assert torch.equal(t16["acts"], base["acts"].half()) and torch.equal(t16["positions"], base["positions"])


def test_prefix_reuse_equals_plain_evee_to_rounding(runs):
    """With prefix reuse: same positions in the same order, activations within fp16 rounding
    (below half an fp16 step of each position's largest value), mean and loss within 1e-5."""
    v, (ids, base), _, _, _, st = runs
    got_ids, got = st.read()
    assert got_ids == ids
    assert torch.equal(got["positions"], base["positions"])
    a, b = got["acts"], base["acts"]
    assert ((a - b).abs() <= b.abs().amax(-1, keepdim=True) * 2.0 ** -11 + 1e-6).all(), float((a - b).abs().max())
    assert _rel(got["mean"], base["mean"]) < 1e-5 and _rel(got["loss_diff"], base["loss_diff"]) < 1e-5
    assert not torch.equal(a, b)  # (really another computation)


def test_evee_recipe_semantics(runs):
    """Facts of EVEE's layout checked on the stored tensors, kind by kind."""
    v, _, st, _, _, _ = runs
    ids, t = st.read()
    K, fixed = KW["K"], KW["fixed"]
    for i, vid in enumerate(ids):
        r = v.set_index("variant_id").loc[vid]
        p0 = r.pos - 1
        fwd, bwd = t["positions"][i]
        fv, bv = fwd[fwd >= 0], bwd[bwd >= 0]
        assert (fv.diff() > 0).all() and (bv.diff() > 0).all()  # both ascending
        assert (bv < p0).all()  # bwd: upstream of the variant only, no fixed window
        first = p0 + max(len(r.ref), len(r.alt))
        assert fv[:fixed].tolist() == list(range(first, first + min(fixed, len(fv))))
        if r.kind == "start_snv":
            assert len(bv) == 2 and len(fv) == K  # two bases upstream in the record
        if r.kind == "end_snv":
            assert len(fv) == 2 and len(bv) == K
        if r.kind == "end_deletion":
            assert len(fv) == 0 and (t["loss_diff"][i, 0] == 0).all()  # nothing after the allele
        if r.kind == "end_insertion":  # the window is spliced: two bases longer, shared_len the ref's
            assert fv.max() <= LAST - 1
        k = len(bv)  # bwd: the reverse pass has seen the variant before reaching these bases
        assert k == 0 or (t["acts"][i, 1, 0, :k] - t["acts"][i, 1, 1, :k]).abs().max() > 0
    assert st.manifest["recipe"] == "evee" and st.manifest["views"] == ["var_same", "ref_same", "ref_cross"]
    assert st.manifest["variant_window"] == "splice" and st.manifest["position_order"] == "ascending"


def test_ref_cross_is_the_other_strand(model, genome, runs):
    """ref_cross at a fwd position is the reverse-complement reference pass at that base."""
    from biointerp.genome import reverse_complement

    v, _, st, _, _, _ = runs
    ids, t = st.read()
    r = v.iloc[2]  # the insertion
    i = ids.index(r.variant_id)
    w = genome.window(r.chrom, r.pos, KW["upstream"], KW["downstream"])
    ids_rc, _ = model.tokenize([reverse_complement(w.seq)])
    rc = model.forward(ids_rc, layers=[LAYER]).activations[LAYER][0].float().flip(0)
    fw = model.forward(model.tokenize([w.seq])[0], layers=[LAYER]).activations[LAYER][0].float()
    pos = t["positions"][i, 0]
    j = pos[pos >= 0] - (w.start - 1)
    torch.testing.assert_close(t["acts"][i, 0, 2, :len(j)], rc[j], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(t["acts"][i, 0, 1, :len(j)], fw[j], atol=1e-4, rtol=1e-4)


def test_diff_view_recipe_metadata_and_legacy(model, genome, runs):
    v, (ids, base), _, _, d, _ = runs
    sd = harvest(model, genome, v.iloc[:4], LAYER, view="evee_diff", store=d / "diff", storage_dtype=torch.float32,
                 progress=False, **KW)
    diff = sd.read(["diff"])[1]["diff"]
    torch.testing.assert_close(diff, base["acts"][:4, :, 0] - base["acts"][:4, :, 1], atol=2e-5, rtol=1e-3)
    assert sd.manifest["views"] == ["var_same - ref_same"] and store_recipe(sd.manifest) == "evee"
    # resuming with the other recipe is refused
    with pytest.raises(StoreError, match="recipe"):
        harvest(model, genome, v.iloc[:4], LAYER, view="evee_diff", recipe="genomic", store=d / "diff",
                progress=False, **KW)
    with pytest.raises(ValueError, match="recipe"):
        harvest(model, genome, v, LAYER, view="evee", recipe="nope", store=d / "x", progress=False)
    with pytest.raises(ValueError, match="fixed window upstream"):
        harvest(model, genome, v, LAYER, view="evee", fixed_rev=4, store=d / "y", progress=False)
    # a store written before recipes existed is read as the genomic recipe, explicitly
    man = json.loads((sd.path / "manifest.json").read_text())
    man.pop("recipe")
    assert store_recipe(man) == "genomic"
    assert store_recipe({"view": "mean"}) is None
    legacy = d / "legacy"
    legacy.mkdir()
    (legacy / "manifest.json").write_text(json.dumps(man))
    assert store_recipe(ActivationStore.open(legacy).manifest) == "genomic"
    from click.testing import CliRunner

    from biointerp.cli import main

    out = CliRunner().invoke(main, ["store", "info", str(legacy)]).output
    assert "recipe     genomic (no recipe field: written before recipes existed, read as genomic)" in out
