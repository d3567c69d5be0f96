"""Native StripedHyena 2 backend: protocol, prefix reuse, save/load, registry, bf16."""

from __future__ import annotations

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from biointerp.models import (REGISTRY, CheckpointError, StripedHyena, evo2_config, load_model,
                              random_model, read_state_dict, save_model, tiny_config)
from biointerp.models.striped_hyena import permute_wqkv

ALL_KINDS = ["embedding_layer", "blocks.0", "blocks.0.filter", "blocks.1.filter", "blocks.2.filter",
             "blocks.3.inner_mha_cls", "blocks.3.mlp.l3", "blocks.6", "blocks.7", "norm"]


def _tol(expected: torch.Tensor) -> float:
    return 1e-5 * max(1.0, expected.abs().max().item())


@pytest.fixture(scope="module")
def model(parity_dir):
    return load_model(parity_dir)


@pytest.fixture(scope="module")
def ids(parity_dir):
    return load_file(str(parity_dir / "inputs.safetensors"))["case1/input_ids"][:, :300]


def test_tokenize_bytes_uppercase_right_padding(model):
    ids, mask = model.tokenize(["acgt", "ACGTNA"])
    assert ids.tolist() == [[65, 67, 71, 84, 1, 1], [65, 67, 71, 84, 78, 65]]
    assert mask.tolist() == [[True] * 4 + [False] * 2, [True] * 6]
    out = model.forward(ids, mask, layers=["blocks.7"])
    alone = model.forward(ids[:1, :4])
    # right padding never changes the real positions of a causal model
    torch.testing.assert_close(out.logits[:1, :4], alone.logits, rtol=0, atol=1e-4)
    with pytest.raises(ValueError, match="right padding"):
        model.forward(ids, mask.flip(1))
    assert set(model.layer_names) >= set(ALL_KINDS) and model.supports_prefix_reuse


def _variants(ids: torch.Tensor, start: int) -> torch.Tensor:
    """Three sequences sharing ids[:start]: the reference, an SNV at start, SNVs after start."""
    v = ids.repeat(3, 1)
    v[1, start] = 65 if int(v[1, start]) != 65 else 84
    v[2, start + 3] = 71 if int(v[2, start + 3]) != 71 else 67
    v[2, -1] = 67 if int(v[2, -1]) != 67 else 65
    return v


@pytest.mark.parametrize("start", [0, 1, 7, 130, 296])
def test_prefix_reuse_equals_full_forward(model, ids, start):
    prefix = model.prefill(ids, layers=["blocks.7"])
    seqs = _variants(ids, start)
    part = model.forward_suffix(prefix, seqs, start, layers=ALL_KINDS)
    full = model.forward(seqs, layers=ALL_KINDS)
    assert part.logits.shape == (3, ids.shape[1] - start, 512)
    for name in ["logits", *ALL_KINDS]:
        got = part.logits if name == "logits" else part.activations[name]
        exp = (full.logits if name == "logits" else full.activations[name])[:, start:]
        assert got.shape == exp.shape, name
        assert (got - exp).abs().max().item() <= _tol(exp), name
    # the prefix keeps the reference's own forward
    torch.testing.assert_close(prefix.output.activations["blocks.7"], full.activations["blocks.7"][:1])
    # suffix log-probs (the logit at start-1 comes from the prefix) equal the full ones
    lp = model.suffix_log_probs(prefix, part, seqs, start)
    full_lp = model.log_probs(seqs)[:, max(start, 1) - 1:]
    assert (lp - full_lp).abs().max().item() < 1e-4


def test_prefix_reuse_indels_change_length(model, ids):
    """Variants longer (insertion) or shorter (deletion) than the reference."""
    start = 150
    prefix = model.prefill(ids)
    ins = torch.cat([ids[:, :start], torch.tensor([[65, 65, 71]]), ids[:, start:]], 1)
    dele = torch.cat([ids[:, :start], ids[:, start + 5:]], 1)
    for seq in (ins, dele):
        part = model.forward_suffix(prefix, seq, start, layers=["blocks.6", "blocks.7"])
        full = model.forward(seq, layers=["blocks.6", "blocks.7"])
        assert (part.logits - full.logits[:, start:]).abs().max() <= _tol(full.logits)
        assert (part.activations["blocks.6"] - full.activations["blocks.6"][:, start:]).abs().max() \
            <= _tol(full.activations["blocks.6"])


def test_early_exit_gives_the_same_activations_bit_for_bit(model, ids):
    """logits=False runs only the blocks up to the deepest hooked layer: same bits, no logits."""
    layers = ["blocks.2", "blocks.3.mlp.l3"]
    assert model.last_block(layers) == 3 and model.last_block(["embedding_layer"]) == -1
    assert model.last_block(["blocks.1", "norm"]) is None
    start = 150
    seqs = _variants(ids, start)
    full_p, early_p = model.prefill(ids, layers=layers), model.prefill(ids, layers=layers, logits=False)
    assert early_p.output.logits is None and early_p.stop_after == 3
    full_s = model.forward_suffix(full_p, seqs, start, layers=layers)
    early_s = model.forward_suffix(early_p, seqs, start, layers=layers, logits=False)
    assert early_s.logits is None
    for name in layers:
        assert torch.equal(early_p.output.activations[name], full_p.output.activations[name]), name
        assert torch.equal(early_s.activations[name], full_s.activations[name]), name
    with pytest.raises(ValueError, match="up to block 3"):
        model.forward_suffix(early_p, seqs, start, layers=["blocks.6"], logits=False)
    with pytest.raises(ValueError, match="up to block 3"):
        model.forward_suffix(early_p, seqs, start, layers=layers)  # logits need every block


def test_forward_suffix_rejects_a_different_prefix(model, ids):
    prefix = model.prefill(ids)
    bad = ids.clone()
    bad[0, 10] = 65 if int(bad[0, 10]) != 65 else 67
    with pytest.raises(ValueError, match="differ from the prefix"):
        model.forward_suffix(prefix, bad, 100)
    with pytest.raises(ValueError, match="past the prefix"):
        model.forward_suffix(model.prefill(ids[:, :50]), ids, 100)


def test_save_load_roundtrip_random_model(tmp_path, ids):
    cfg = tiny_config(hidden_size=32, num_layers=8, num_attention_heads=2, hcm_filter_length=16)
    m1 = random_model(cfg, seed=7)
    m2 = random_model(cfg, seed=7)
    assert all(torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m2.state_dict().values()))
    assert not torch.equal(random_model(cfg, seed=8).embedding_layer.weight, m1.embedding_layer.weight)
    save_model(m1, tmp_path, {"name": "tiny-test"})
    assert {p.name for p in tmp_path.iterdir()} == {"config.yml", "model.safetensors", "card.json"}
    loaded = load_model(tmp_path)
    assert loaded.name == "tiny-test" and loaded.card["architecture"] == "StripedHyena2"
    with torch.no_grad():
        ref = m1(ids[:, :64])
    torch.testing.assert_close(loaded.forward(ids[:, :64]).logits, ref)
    # on disk Wqkv is in the official checkpoint layout (H, {q,k,v}, d_h)
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as f:
        disk = f.get_tensor("blocks.3.inner_mha_cls.Wqkv.weight")
    assert torch.equal(permute_wqkv(disk, 2), m1.blocks[3].inner_mha_cls.Wqkv.weight.detach())
    assert not torch.equal(disk, m1.blocks[3].inner_mha_cls.Wqkv.weight.detach())


def test_random_model_trains(ids):
    m = random_model(tiny_config(hidden_size=32, num_attention_heads=2, hcm_filter_length=16), seed=0)
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    x = ids[:, :64]
    losses = []
    for _ in range(6):
        logits = m(x[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 512), x[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(p.grad is not None for p in m.parameters() if not isinstance(p, torch.nn.Buffer))
    assert losses[-1] < losses[0] - 0.5


def test_sharded_pt_parts_are_merged(parity_dir, tmp_path):
    data = (parity_dir / "weights.pt").read_bytes()
    cut = len(data) // 3
    for i, chunk in enumerate((data[:cut], data[cut:2 * cut], data[2 * cut:])):
        (tmp_path / f"w.pt.part{i}").write_bytes(chunk)
    state = read_state_dict(tmp_path / "w.pt")
    ref = load_file(str(parity_dir / "weights.safetensors"))
    assert state.keys() == ref.keys() and all(torch.equal(state[k], ref[k]) for k in ref)
    assert (tmp_path / "w.pt").stat().st_size == len(data)


def test_missing_files_are_named(tmp_path, monkeypatch):
    monkeypatch.setenv("BIOINTERP_CHECKPOINTS", str(tmp_path))
    with pytest.raises(CheckpointError, match="evo2_7b.pt"):
        load_model("evo2_7b")
    with pytest.raises(CheckpointError, match="not found"):
        load_model("evo2_7b", checkpoint=tmp_path / "nope.pt")
    (tmp_path / "cfgonly").mkdir()
    (tmp_path / "cfgonly" / "config.yml").write_text("hidden_size: 8\n")
    with pytest.raises(ValueError, match="missing required"):
        load_model(tmp_path / "cfgonly")
    with pytest.raises(CheckpointError, match="cannot resolve"):
        load_model("no-such-model")


def test_registry_configs_match_published_parameter_counts():
    """ARCHITECTURE.md: evo2_7b has 344 tensors and 6,581,723,200 parameters (8k: ~6.48e9)."""
    with torch.device("meta"):
        m7 = StripedHyena(evo2_config("evo2_7b"))
        m8k = StripedHyena(evo2_config("evo2_7b_base"))
    assert len(m7.state_dict()) == 344
    # the published count includes the 5 persistent inv_freq buffers (5 x 64)
    assert sum(t.numel() for t in m7.state_dict().values()) == 6_581_723_200
    assert abs(sum(t.numel() for t in m8k.state_dict().values()) - 6.48e9) < 0.01e9
    kinds = m7.config.layer_kinds()
    assert [i for i, k in enumerate(kinds) if k == "attn"] == [3, 10, 17, 24, 31]
    assert m7.blocks[3].inner_mha_cls.rotary_emb.scaling == 128
    assert m8k.blocks[3].inner_mha_cls.rotary_emb.scaling == 1
    assert {"evo2_7b", "evo2_7b_base", "evo2_1b_base", "evo2_40b"} <= set(REGISTRY)


@pytest.mark.parametrize("name, attn, hcs_head, n_params", [
    ("evo2_1b_base", [3, 10, 17, 24], [0, 4, 7, 11, 14, 18, 21], 1.108e9),
    ("evo2_20b", [3, 10, 17], [0, 4, 7, 11, 14, 18, 21], 19.74e9),
    ("evo2_40b", [3, 10, 17, 24, 31, 35, 42, 49], [0, 4, 7, 11, 14, 18, 21, 25, 28, 32, 36, 39, 43, 46],
     41.12e9),
    ("evo2_40b_base", [3, 10, 17, 24, 31, 35, 42, 49], [0, 4, 7, 11, 14, 18, 21, 25, 28, 32, 36, 39, 43, 46],
     40.33e9),
])
def test_registry_block_patterns_follow_official_configs(name, attn, hcs_head, n_params):
    """The 40B model breaks the period-7 pattern (attention at 35, not 38): the registry
    carries the official evo2/configs/*.yml block lists; sizes ~ the published 1B/20B/40B."""
    cfg = evo2_config(name)
    kinds = cfg.layer_kinds()
    assert [i for i, k in enumerate(kinds) if k == "attn"] == attn
    assert [i for i, k in enumerate(kinds) if k == "hcs"] == hcs_head
    with torch.device("meta"):
        m = StripedHyena(cfg)
    assert abs(sum(t.numel() for t in m.state_dict().values()) - n_params) / n_params < 1e-3


def test_bf16_cpu_within_documented_tolerance(parity_dir, ids):
    """bf16 on CPU (log_poles/residues/inv_freq kept fp32, FFT convs in fp32): logits within
    8% of max|logits| of fp32 and per-token log-probs correlated r > 0.999 with fp32."""
    m32 = load_model(parity_dir)
    m16 = load_model(parity_dir, dtype=torch.bfloat16)
    assert m16.dtype == torch.bfloat16
    assert m16.module.blocks[2].filter.log_poles.dtype == torch.float32
    assert m16.module.blocks[0].projections.weight.dtype == torch.bfloat16
    out16 = m16.forward(ids, layers=["blocks.7"])
    out32 = m32.forward(ids, layers=["blocks.7"])
    assert out16.activations["blocks.7"].dtype == torch.bfloat16
    rel = (out16.logits.float() - out32.logits).abs().max() / out32.logits.abs().max()
    assert rel < 0.08, rel
    lp16, lp32 = m16.log_probs(ids), m32.log_probs(ids)
    r = torch.corrcoef(torch.stack([lp16.flatten(), lp32.flatten()]))[0, 1]
    assert r > 0.999, r
    # prefix reuse also runs in bf16
    part = m16.forward_suffix(m16.prefill(ids), ids, 200)
    assert (part.logits - out16.logits[:, 200:]).abs().max() / out32.logits.abs().max() < 0.08


def test_registry_name_with_local_checkpoint_and_config(parity_dir):
    """Registry path: checkpoint .pt (weights_only + mmap), config override, built on meta."""
    exp = load_file(str(parity_dir / "expected.safetensors"))["case0/logits"]
    ids = load_file(str(parity_dir / "inputs.safetensors"))["case0/input_ids"]
    m = load_model("evo2_7b", checkpoint=parity_dir / "weights.pt", config=parity_dir / "config.yml")
    assert m.name == "evo2_7b" and not any(p.is_meta for p in m.module.parameters())
    assert (m.forward(ids).logits - exp).abs().max() <= _tol(exp)
    mb = load_model("evo2_7b", checkpoint=parity_dir / "weights.pt", config=parity_dir / "config.yml",
                    dtype="bf16")
    assert mb.module.blocks[1].filter.h.dtype == torch.bfloat16
    assert mb.module.blocks[6].filter.log_poles.dtype == torch.float32
    assert mb.module.blocks[7].inner_mha_cls.rotary_emb.inv_freq.dtype == torch.float32


def test_te_extra_state_bytesio_entries_are_dropped(parity_dir, tmp_path):
    """Official TE checkpoints hold `_extra_state` io.BytesIO entries: weights_only load must
    accept them and the loader must ignore them (and a redundant `unembed.weight`)."""
    import io

    state = load_file(str(parity_dir / "weights.safetensors"))
    state["blocks.0.projections._extra_state"] = io.BytesIO(b"fp8-meta")
    state["unembed.weight"] = state["embedding_layer.weight"].clone()
    torch.save(state, tmp_path / "te.pt")
    m = load_model("evo2_7b", checkpoint=tmp_path / "te.pt", config=parity_dir / "config.yml")
    ids = load_file(str(parity_dir / "inputs.safetensors"))["case0/input_ids"]
    exp = load_file(str(parity_dir / "expected.safetensors"))["case0/logits"]
    assert (m.forward(ids).logits - exp).abs().max() <= _tol(exp)


def test_official_backend_needs_the_evo2_package():
    try:
        import evo2  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="official evo2 package"):
            load_model("evo2-official:evo2_7b", checkpoint="/nonexistent/evo2_7b.pt")
    else:  # pragma: no cover - only where the official stack is installed
        with pytest.raises(ValueError, match="checkpoint"):
            load_model("evo2-official:evo2_7b")
