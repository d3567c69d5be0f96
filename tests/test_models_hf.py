"""Hugging Face backend on small randomly initialised models saved locally (no download)."""

from __future__ import annotations

import pandas as pd
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
    first = m.log_probs(ids, mask, include_first=True)  # no BOS: base 0 has no score
    assert first.shape == (2, 10) and torch.isnan(first[:, 0]).all()
    torch.testing.assert_close(first[:, 1:], lp, equal_nan=True)
    with pytest.raises(KeyError, match="unknown layer"):
        m.forward(ids, layers=["blocks.99"])


def test_masked_lm_esm(esm_dir):
    m = load_model(f"hf:{esm_dir}")
    assert m.kind == "masked" and m.d_model == 32
    assert (m.special_lead, m.special_trail) == ([0], [2])  # <cls> ... <eos>, added inside forward
    ids, mask = m.tokenize(["acgtn", "ACG"])
    assert ids.shape == (2, 5) and ids[0].tolist() == [4, 5, 6, 7, 8] and mask.sum(1).tolist() == [5, 3]
    out = m.forward(ids, mask, layers=["esm.encoder.layer.0", "esm.encoder.emb_layer_norm_after"])
    assert out.logits.shape == (2, 5, 10)
    full = torch.tensor([[0, 4, 5, 6, 7, 8, 2], [0, 4, 5, 6, 2, 1, 1]])
    with torch.no_grad():
        ref = m.module(input_ids=full, attention_mask=(full != 1).long(), output_hidden_states=True)
    torch.testing.assert_close(out.activations["esm.encoder.layer.0"], ref.hidden_states[1][:, 1:6])
    torch.testing.assert_close(out.activations["esm.encoder.emb_layer_norm_after"][0], ref.hidden_states[-1][0, 1:6])
    torch.testing.assert_close(out.logits[1, :3], ref.logits[1, 1:4])
    with pytest.raises(NotImplementedError, match="masked LM"):
        m.log_probs(ids)


def test_hf_missing_dir_names_the_file(tmp_path):
    with pytest.raises(CheckpointError, match="config.json"):
        load_model(f"hf:{tmp_path}")


# --------------------------------------------------------------------------- per-base contract
# Character-level tokenizers WITH special tokens (as HyenaDNA / Caduceus / ESM-style models
# ship them) and a k-mer tokenizer, built here with the `tokenizers` library.

SPECIALS = ["[PAD]", "[BOS]", "[EOS]", "[UNK]", "[MASK]", "[CLS]", "[SEP]"]
CHAR_VOCAB = {t: i for i, t in enumerate(SPECIALS + list("ACGTN"))}  # A=7 C=8 G=9 T=10 N=11
LAYERS_LLAMA = ["model.layers.0", "model.layers.1", "model.norm"]
LAYERS_ESM = ["esm.encoder.layer.0", "esm.encoder.emb_layer_norm_after"]


def _save_tokenizer(d, vocab: dict[str, int], pattern: str, template: str) -> None:
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.Split(Regex(pattern), "isolated")
    lead, trail = template.split(" $A ")
    tk.post_processor = processors.TemplateProcessing(
        single=template, special_tokens=[(lead, vocab[lead]), (trail, vocab[trail])])
    # left padding on purpose: the backend must pad right whatever the saved tokenizer says
    PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="[BOS]", eos_token="[EOS]", pad_token="[PAD]",
                            unk_token="[UNK]", mask_token="[MASK]", cls_token="[CLS]", sep_token="[SEP]",
                            padding_side="left").save_pretrained(d)


def _tiny_llama(d, vocab_size: int) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(1)
    cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256,
                      bos_token_id=1, eos_token_id=2, pad_token_id=0)
    LlamaForCausalLM(cfg).save_pretrained(d)


@pytest.fixture(scope="module")
def llama_bos_dir(tmp_path_factory):
    """Causal LM whose tokenizer adds [BOS] ... [EOS]."""
    d = tmp_path_factory.mktemp("llama_bos")
    _save_tokenizer(d, CHAR_VOCAB, ".", "[BOS] $A [EOS]")
    _tiny_llama(d, len(CHAR_VOCAB))
    return d


@pytest.fixture(scope="module")
def esm_cls_dir(tmp_path_factory):
    """Masked LM whose tokenizer adds [CLS] ... [SEP]."""
    from transformers import EsmConfig, EsmForMaskedLM

    d = tmp_path_factory.mktemp("esm_cls")
    _save_tokenizer(d, CHAR_VOCAB, ".", "[CLS] $A [SEP]")
    torch.manual_seed(2)
    cfg = EsmConfig(vocab_size=len(CHAR_VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                    intermediate_size=64, max_position_embeddings=256, pad_token_id=0,
                    mask_token_id=CHAR_VOCAB["[MASK]"], position_embedding_type="rotary")
    EsmForMaskedLM(cfg).save_pretrained(d)
    return d


def _direct(m, seq: str):
    """A plain transformers pass over the tokenizer's own encoding (specials included)."""
    full = torch.tensor([m.hf_tokenizer(seq.upper())["input_ids"]])
    with torch.no_grad():
        return full, m.module(input_ids=full, output_hidden_states=True)


SEQS = ["acgtnacgtaGGT", "TTGCA", "GATTACAGATT"]


@pytest.mark.parametrize("which", ["llama", "esm"])
def test_outputs_are_per_base_and_batch_independent(which, llama_bos_dir, esm_cls_dir):
    d, layers = (llama_bos_dir, LAYERS_LLAMA) if which == "llama" else (esm_cls_dir, LAYERS_ESM)
    m = load_model(f"hf:{d}")
    assert m.hf_tokenizer.padding_side == "right"
    assert (m.special_lead, m.special_trail) == (([1], [2]) if which == "llama" else ([5], [6]))
    ids, mask = m.tokenize(SEQS)
    assert ids.shape == (3, 13) and mask.sum(1).tolist() == [13, 5, 11]
    assert ids[0, :5].tolist() == [7, 8, 9, 10, 11] and ids[1, 5:].eq(m.pad_id).all()  # bases only, right-padded
    out = m.forward(ids, mask, layers=layers)
    assert out.logits.shape == (3, 13, len(CHAR_VOCAB))
    for i, seq in enumerate(SEQS):
        n = len(seq)
        full, ref = _direct(m, seq)
        assert full.shape[1] == n + 2
        # base j sits at position j + 1 of the direct pass: a one-off shift would fail here
        torch.testing.assert_close(out.logits[i, :n], ref.logits[0, 1:n + 1])
        for layer, k in zip(layers[::len(layers) - 1], (1, -1)):  # first block, final norm
            assert out.activations[layer].shape == (3, 13, 32)
            torch.testing.assert_close(out.activations[layer][i, :n], ref.hidden_states[k][0, 1:n + 1])
        # one-by-one equals batched (padding side)
        solo_ids, solo_mask = m.tokenize([seq])
        solo = m.forward(solo_ids, solo_mask, layers=layers)
        assert solo.logits.shape[1] == n
        torch.testing.assert_close(out.logits[i, :n], solo.logits[0])
        for layer in layers:
            torch.testing.assert_close(out.activations[layer][i, :n], solo.activations[layer][0])


def test_causal_log_probs_per_base(llama_bos_dir):
    m = load_model(f"hf:{llama_bos_dir}")
    ids, mask = m.tokenize(SEQS)
    lp = m.log_probs(ids, mask)
    first = m.log_probs(ids, mask, include_first=True)
    assert lp.shape == (3, 12) and first.shape == (3, 13)
    for i, seq in enumerate(SEQS):
        n = len(seq)
        full, ref = _direct(m, seq)
        lsm = torch.log_softmax(ref.logits[0].float(), -1)
        want = lsm[:n].gather(-1, full[0, 1:n + 1, None]).squeeze(-1)  # base t from tokens < t (BOS first)
        torch.testing.assert_close(lp[i, : n - 1], want[1:])
        torch.testing.assert_close(first[i, :n], want)
        assert torch.isnan(lp[i, n - 1:]).all() and torch.isnan(first[i, n:]).all()


def _brca1_variants(genome):
    p = 41245003
    s = genome.fetch("chr17", p, p + 12)
    other = {b: next(c for c in "ACGT" if c != b) for b in "ACGT"}
    rows = [("chr17", p, s[0], other[s[0]]), ("chr17", p + 4, s[4], other[s[4]]),
            ("chr17", p + 9, s[9], s[9] + "GA")]
    df = pd.DataFrame(rows, columns=["chrom", "pos", "ref", "alt"])
    df["variant_id"] = df.chrom + ":" + df.pos.astype(str) + ":" + df.ref + ":" + df.alt
    return df


WINDOW = 48


def test_score_variants_causal_matches_transformers(llama_bos_dir, brca1_fasta):
    from biointerp.genome import Genome, variant_sequences
    from biointerp.scoring import score_variants

    m, genome = load_model(f"hf:{llama_bos_dir}"), Genome(brca1_fasta)
    v = _brca1_variants(genome)
    got = score_variants(m, genome, v, window=WINDOW, batch_size=4, progress=False)
    assert (got["status"] == "ok").all()

    def mean_ll(seq: str) -> float:  # mean log p(base_t | bases_<t, BOS), t = 1..L-1
        full, ref = _direct(m, seq)
        lsm = torch.log_softmax(ref.logits[0].double(), -1)
        return float(lsm[1:len(seq)].gather(-1, full[0, 2:len(seq) + 1, None]).mean())

    for i, r in enumerate(v.itertuples()):
        vw = variant_sequences(genome, r.chrom, r.pos, r.ref, r.alt, WINDOW // 2, WINDOW - WINDOW // 2,
                               same_length=False)  # as score_variants builds them
        assert len(vw.alt_seq) == WINDOW + (2 if i == 2 else 0)  # the insertion pads the others in its batch
        want = mean_ll(vw.alt_seq) - mean_ll(vw.ref_seq)
        assert got["delta_ll"].iloc[i] == pytest.approx(want, abs=1e-5)
        assert got["ref_ll"].iloc[i] == pytest.approx(mean_ll(vw.ref_seq), abs=1e-5)


def test_masked_marginal_matches_transformers(esm_cls_dir, brca1_fasta):
    from biointerp.genome import Genome, variant_sequences
    from biointerp.scoring import score_variants

    m, genome = load_model(f"hf:{esm_cls_dir}"), Genome(brca1_fasta)
    v = _brca1_variants(genome)
    got = score_variants(m, genome, v, window=WINDOW, progress=False)
    assert got["status"].tolist() == ["ok", "ok", "unsupported"]  # insertion: not a masked marginal
    for i, r in enumerate(v.itertuples()):
        if i == 2:
            continue
        vw = variant_sequences(genome, r.chrom, r.pos, r.ref, r.alt, WINDOW // 2, WINDOW - WINDOW // 2,
                               same_length=False)  # as score_variants builds them
        full = torch.tensor([m.hf_tokenizer(vw.ref_seq.upper())["input_ids"]])
        assert full[0, 1 + vw.offset] == CHAR_VOCAB[r.ref]  # [CLS] first: base i is token i + 1
        full[0, 1 + vw.offset] = CHAR_VOCAB["[MASK]"]
        with torch.no_grad():
            lsm = torch.log_softmax(m.module(input_ids=full).logits[0, 1 + vw.offset].double(), -1)
        want = float(lsm[CHAR_VOCAB[r.alt]] - lsm[CHAR_VOCAB[r.ref]])
        assert got["delta_ll"].iloc[i] == pytest.approx(want, abs=1e-5)


def test_kmer_or_unknown_base_tokenizer_is_refused(tmp_path):
    import itertools

    kmers = ["".join(k) for k in itertools.product("ACGTN", repeat=3)]
    kmer_vocab = {t: i for i, t in enumerate(SPECIALS + kmers)}
    _save_tokenizer(tmp_path / "kmer", kmer_vocab, "...", "[CLS] $A [SEP]")
    _tiny_llama(tmp_path / "kmer", len(kmer_vocab))
    with pytest.raises(CheckpointError, match=r"gives 4 tokens for the 10 bases.*character-level"):
        load_model(f"hf:{tmp_path / 'kmer'}")
    lower = {t: i for i, t in enumerate(SPECIALS + list("acgtn"))}  # bases upper-cased -> all [UNK]
    _save_tokenizer(tmp_path / "lower", lower, ".", "[BOS] $A [EOS]")
    _tiny_llama(tmp_path / "lower", len(lower))
    with pytest.raises(CheckpointError, match="A, C, G, T one distinct id"):
        load_model(f"hf:{tmp_path / 'lower'}")


def test_harvest_pass_is_per_base(llama_bos_dir):
    from biointerp.harvest import run_full

    m = load_model(f"hf:{llama_bos_dir}")
    seq = SEQS[2]
    acts, lp = run_full(m, seq, ["model.layers.0"])
    _, ref = _direct(m, seq)
    assert acts["model.layers.0"].shape == (len(seq), 32) and lp.shape == (len(seq) - 1,)
    torch.testing.assert_close(acts["model.layers.0"], ref.hidden_states[1][0, 1:len(seq) + 1])
    torch.testing.assert_close(lp, m.log_probs(*m.tokenize([seq]))[0])
