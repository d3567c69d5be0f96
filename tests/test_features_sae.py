"""SAE core: the published Evo 2 layout loads and encodes as the plain formulas say."""

import math

import pytest
import torch

from biointerp.features import SAEError, SparseAutoencoder, load_published_sae, load_sae, save_sae


def plain_encode(x, W, b_enc, k):
    """The published formulas, written out: relu(x @ W + b_enc), top k·n_tokens over the flat batch."""
    f = torch.relu(x @ W + b_enc)
    n = k * math.prod(f.shape[:-1])
    top = torch.topk(f.flatten(), n)
    return torch.zeros_like(f.flatten()).scatter(-1, top.indices, top.values).reshape(f.shape)


def plain_decode(f, W, b_dec):
    return f @ W.T + b_dec


def published_state(d_in=32, d_hidden=256, seed=1):
    g = torch.Generator().manual_seed(seed)
    return {"_orig_mod.W": torch.randn(d_in, d_hidden, generator=g) * 0.2,
            "_orig_mod.b_enc": torch.randn(d_hidden, generator=g) * 0.1,
            "module.b_dec": torch.randn(d_in, generator=g)}


def test_published_layout_loads_and_matches_formulas(tmp_path):
    state = published_state()
    path = tmp_path / "sae-layer26-mixed-expansion_8-k_8.pt"
    torch.save(state, path)
    sae = load_published_sae(path)
    assert (sae.d_in, sae.d_hidden, sae.k, sae.kind, sae.tied) == (32, 256, 8, "batch_topk", True)
    W, b_enc, b_dec = state["_orig_mod.W"], state["_orig_mod.b_enc"], state["module.b_dec"]
    x = torch.randn(3, 50, 32, generator=torch.Generator().manual_seed(2))
    f_ref = plain_encode(x, W, b_enc, 8)
    f = sae.encode(x)
    assert torch.equal(f, f_ref)
    assert (f != 0).sum() == 8 * 150  # k x n_tokens survive over the flattened batch
    assert not torch.equal((f != 0).sum(-1), torch.full((3, 50), 8))  # per-token counts vary
    assert torch.allclose(sae.decode(f), plain_decode(f_ref, W, b_dec), atol=1e-6)
    # the rank ramp only breaks ties: values stay those of the formula
    sae.rank_ramp = 1e-6
    assert torch.allclose(sae.encode(x), f_ref, atol=1e-5)


def test_topk_untied_and_roundtrip(tmp_path):
    sae = SparseAutoencoder(16, 64, 4, kind="topk", tied=False, seed=3)
    x = torch.randn(10, 16)
    f = sae.encode(x)
    assert torch.equal((f != 0).sum(-1), torch.full((10,), 4))
    with torch.no_grad():
        sae.input_scale.fill_(2.5)
    p = save_sae(sae, tmp_path / "s.safetensors", layer="blocks.4")
    assert p.with_suffix(".json").exists()
    back = load_sae(p)
    assert back.card()["tied"] is False and back.card_extra["layer"] == "blocks.4"
    assert torch.equal(back.encode(x), sae.encode(x))
    assert torch.equal(back.decode(f), sae.decode(f))


@pytest.mark.parametrize("mutate, message", [
    (lambda s: s.update({"module.W_extra": torch.zeros(3)}), "unknown keys"),
    (lambda s: s.pop("module.b_dec"), "missing keys"),
    (lambda s: s.update({"module.b_dec": torch.zeros(31)}), "wrong shapes"),
    (lambda s: s.update({"_orig_mod.W": torch.zeros(32)}), "2-D tensor 'W'"),
])
def test_malformed_state_dict_errors(tmp_path, mutate, message):
    state = published_state()
    mutate(state)
    path = tmp_path / "sae-k_8.pt"
    torch.save(state, path)
    with pytest.raises(SAEError, match=message):
        load_published_sae(path)


def test_pickled_objects_refused_and_k_required(tmp_path):
    path = tmp_path / "bad.pt"
    torch.save({"W": torch.zeros(2, 4), "fn": print}, path)
    with pytest.raises(SAEError, match="weights-only"):
        load_published_sae(path)
    path2 = tmp_path / "nok.pt"
    torch.save(published_state(), path2)
    with pytest.raises(SAEError, match="does not say k"):
        load_published_sae(path2)
    assert load_published_sae(path2, k=4).k == 4


def test_element_rows_are_the_layer_at_the_element_bases():
    """element_rows: the layer's activations at each element's bases ± flank, read in a window
    that ends just after the element (equal to a full pass over that window)."""
    import pandas as pd

    from biointerp.features.train import element_rows
    from biointerp.harvest import run_full
    from biointerp.models import StripedHyenaModel, random_model, tiny_config

    model = StripedHyenaModel(random_model(tiny_config(hidden_size=16, num_layers=4, num_attention_heads=2), seed=3))
    g = torch.Generator().manual_seed(0)
    seq = "".join("ACGT"[i] for i in torch.randint(0, 4, (600,), generator=g).tolist())
    els = pd.DataFrame({"chrom": ["c", "c", "c"], "start": [300, 10, 500], "end": [308, 12, 505],
                        "type": ["five_prime_cis_splice_site", "TATA_box", "exon"]})
    rows = element_rows(model, {"c": seq}, els, ["five_prime_cis_splice_site", "TATA_box"], "blocks.2", 1000,
                        window=64, flank=2, seed=0)
    assert rows.shape == (9 + 4 + 3 + 4, 16)  # both elements ± 2 (the second clipped at the contig start)
    want = {}
    for start, end in ((300, 308), (10, 12)):
        lo, hi = max(0, start - 1 - 2), end + 2
        w0 = max(0, hi - 64)
        acts, _ = run_full(model, seq[w0:hi], ["blocks.2"])
        want[start] = acts["blocks.2"][lo - w0:hi - w0]
    got = {len(x) for x in (rows[:13], rows[13:])}
    assert got == {13, 7}
    both = torch.cat([want[300], want[10]]) if torch.allclose(rows[:13], want[300], atol=1e-5) \
        else torch.cat([want[10], want[300]])
    torch.testing.assert_close(rows, both, atol=1e-5, rtol=1e-5)
    assert element_rows(model, {"c": seq}, els, ["TATA_box"], "blocks.2", 3, window=64, flank=2).shape[0] == 3
