"""Hugging Face backend on small randomly initialised models saved locally (no download)."""

from __future__ import annotations

import pytest
import torch

from biointerp.models import CheckpointError, load_model


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=512, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256)
    d = tmp_path_factory.mktemp("llama")
    LlamaForCausalLM(cfg).save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def esm_dir(tmp_path_factory):
    from transformers import EsmConfig, EsmForMaskedLM, EsmTokenizer

    d = tmp_path_factory.mktemp("esm")
    vocab = ["<cls>", "<pad>", "<eos>", "<unk>", "A", "C", "G", "T", "N", "<mask>"]
    (d / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = EsmTokenizer(str(d / "vocab.txt"))
    tok.save_pretrained(d)
    torch.manual_seed(0)
    cfg = EsmConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                    intermediate_size=64, max_position_embeddings=128, pad_token_id=1,
                    mask_token_id=9, position_embedding_type="rotary")
    EsmForMaskedLM(cfg).save_pretrained(d)
    return d


def test_causal_lm_hidden_states_by_module_name(llama_dir):
    m = load_model(f"hf:{llama_dir}")
    assert m.kind == "causal" and m.d_model == 32 and "model.layers.1" in m.layer_names
    ids, mask = m.tokenize(["acgtacgtAC", "GGTTA"])
    assert ids[0, :4].tolist() == [65, 67, 71, 84]  # byte tokenizer, upper-cased
    out = m.forward(ids, mask, layers=["model.layers.0", "model.layers.1", "model.norm"])
    assert out.logits.shape == (2, 10, 512)
    assert out.activations["model.layers.1"].shape == (2, 10, 32)
    # hooks capture the same tensors transformers reports as hidden states
    with torch.no_grad():
        ref = m.module(input_ids=ids, attention_mask=mask.long(), output_hidden_states=True)
    torch.testing.assert_close(out.activations["model.layers.0"], ref.hidden_states[1])
    torch.testing.assert_close(out.activations["model.norm"], ref.hidden_states[-1])
    lp = m.log_probs(ids, mask)
    assert lp.shape == (2, 9) and torch.isnan(lp[1, 4:]).all() and torch.isfinite(lp[0]).all()
    with pytest.raises(KeyError, match="unknown layer"):
        m.forward(ids, layers=["blocks.99"])


def test_masked_lm_esm(esm_dir):
    m = load_model(f"hf:{esm_dir}")
    assert m.kind == "masked" and m.d_model == 32
    ids, mask = m.tokenize(["acgtn", "ACG"])
    out = m.forward(ids, mask, layers=["esm.encoder.layer.0", "esm.encoder.emb_layer_norm_after"])
    assert out.logits.shape == (2, ids.shape[1], 10)
    with torch.no_grad():
        ref = m.module(input_ids=ids, attention_mask=mask.long(), output_hidden_states=True)
    torch.testing.assert_close(out.activations["esm.encoder.layer.0"], ref.hidden_states[1])
    torch.testing.assert_close(out.activations["esm.encoder.emb_layer_norm_after"], ref.hidden_states[-1])
    with pytest.raises(NotImplementedError, match="masked LM"):
        m.log_probs(ids)


def test_hf_missing_dir_names_the_file(tmp_path):
    with pytest.raises(CheckpointError, match="config.json"):
        load_model(f"hf:{tmp_path}")
