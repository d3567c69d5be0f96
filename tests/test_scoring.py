"""Zero-shot scoring: equals the Evo 2 recipe, strands, reductions, every row kept, CLI on real ClinVar."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pysam
import pytest
import torch
from click.testing import CliRunner

from biointerp.cli import main
from biointerp.genome import Genome, reverse_complement, variant_sequences
from biointerp.models import StripedHyenaModel, random_model, save_model, tiny_config
from biointerp.scoring import evo2_zero_shot_reference, score_variants, select_shard
from biointerp.tables import read_scores

WINDOW = 192


@pytest.fixture(scope="module")
def model():
    return StripedHyenaModel(random_model(tiny_config(hidden_size=16, num_layers=8, num_attention_heads=2), seed=7))


@pytest.fixture(scope="module")
def genome(brca1_fasta):
    return Genome(brca1_fasta)


def _variants(genome: Genome) -> pd.DataFrame:
    """SNVs (two alts at one position), an insertion, a deletion, a REF mismatch, an unknown contig."""
    p = 41245003
    s = genome.fetch("chr17", p, p + 20)
    other = {b: next(c for c in "ACGT" if c != b) for b in "ACGT"}
    third = {b: next(c for c in "TGCA" if c not in (b, other[b])) for b in "ACGT"}
    rows = [
        ("chr17", p, s[0], other[s[0]]),
        ("chr17", p, s[0], third[s[0]]),
        ("chr17", p + 4, s[4], other[s[4]]),
        ("chr17", p + 9, s[9], s[9] + "GA"),
        ("chr17", p + 12, s[12:15], s[12]),
        ("chr17", p + 16, other[s[16]], s[16]),  # REF disagrees with the genome
        ("chrUn", 100, "A", "C"),
    ]
    df = pd.DataFrame(rows, columns=["chrom", "pos", "ref", "alt"])
    df["variant_id"] = df.chrom + ":" + df.pos.astype(str) + ":" + df.ref + ":" + df.alt
    df["status"] = "ok"
    return df


def test_equals_evo2_recipe_and_keeps_every_row(model, genome):
    v = _variants(genome)
    base = evo2_zero_shot_reference(model, genome, v, window=WINDOW)
    fast = score_variants(model, genome, v, window=WINDOW, progress=False)
    full = score_variants(model, genome, v, window=WINDOW, reuse_prefix=False, batch_size=3, progress=False,
                          chunk_rows=2)
    assert list(fast["variant_id"]) == list(v["variant_id"])
    assert list(fast["status"][-2:]) == ["ref_mismatch", "unknown_contig"]
    assert fast["delta_ll"][-2:].isna().all() and fast["status_detail"].iloc[-1]
    ok = fast["status"] == "ok"
    assert ok.sum() == 5 and np.isfinite(base[ok.to_numpy()]).all()
    np.testing.assert_allclose(fast["delta_ll"][ok], base[ok.to_numpy()], atol=2e-6, rtol=0)
    np.testing.assert_allclose(full["delta_ll"][ok], base[ok.to_numpy()], atol=2e-6, rtol=0)
    assert fast["delta_ll"][ok].abs().min() > 0  # a real signal, not zeros


def test_strands_and_reductions(model, genome):
    v = _variants(genome).iloc[[0, 3, 4]]
    fwd = score_variants(model, genome, v, window=WINDOW, progress=False)
    rev = score_variants(model, genome, v, window=WINDOW, strand="rev", progress=False)
    both = score_variants(model, genome, v, window=WINDOW, strand="both", progress=False)
    np.testing.assert_allclose(both["delta_ll"], (fwd["delta_ll"] + rev["delta_ll"]) / 2, atol=1e-9)
    np.testing.assert_allclose(both["delta_ll_rev"], rev["delta_ll"], atol=1e-9)
    # rev = the recipe applied by hand to the reverse-complemented windows
    r = v.iloc[1]
    vw = variant_sequences(genome, r.chrom, r.pos, r.ref, r.alt, WINDOW // 2, WINDOW - WINDOW // 2, same_length=False)
    lp = [model.log_probs(model.tokenize([reverse_complement(s)])[0])[0].double() for s in (vw.ref_seq, vw.alt_seq)]
    assert rev["delta_ll"].iloc[1] == pytest.approx(float(lp[1].mean() - lp[0].mean()), abs=2e-6)
    summed = score_variants(model, genome, v, window=WINDOW, reduce="sum", progress=False)
    assert summed["ref_ll"].iloc[0] == pytest.approx(fwd["ref_ll"].iloc[0] * (WINDOW - 1), rel=1e-6)
    # span: only tokens near the allele; equals a hand computation on the full pass
    sp = score_variants(model, genome, v.iloc[:1], window=WINDOW, reduce="sum", span=10, progress=False)
    vw = variant_sequences(genome, r.chrom, v.iloc[0].pos, v.iloc[0].ref, v.iloc[0].alt, WINDOW // 2, WINDOW - WINDOW // 2)
    lps = [model.log_probs(model.tokenize([s])[0])[0].double() for s in (vw.ref_seq, vw.alt_seq)]
    o = vw.offset
    want = float(lps[1][o - 10 - 1: o + 1 + 10 - 1].sum() - lps[0][o - 10 - 1: o + 1 + 10 - 1].sum())
    assert sp["delta_ll"].iloc[0] == pytest.approx(want, abs=1e-5)
    with pytest.raises(ValueError, match="strand"):
        score_variants(model, genome, v, strand="up", progress=False)


def _span_by_hand(model, genome, r, span: int, rev: bool) -> float:
    """Δ of summed log-probs over tokens within ``span`` of the allele, from full passes."""
    vw = variant_sequences(genome, r.chrom, r.pos, r.ref, r.alt, WINDOW // 2, WINDOW - WINDOW // 2,
                           same_length=False)
    total = 0.0
    for seq, n, sign in ((vw.ref_seq, len(r.ref), -1), (vw.alt_seq, len(r.alt), 1)):
        a0 = len(seq) - vw.offset - n if rev else vw.offset
        seq = reverse_complement(seq) if rev else seq
        lp = model.log_probs(model.tokenize([seq])[0])[0].double()
        lo, hi = max(1, a0 - span), min(len(seq), a0 + n + span)  # tokens lo..hi-1
        total += sign * float(lp[lo - 1: hi - 1].sum())
    return total


@pytest.mark.parametrize("reuse", [True, False])
def test_span_stops_passes_at_last_scored_token_without_changing_numbers(model, genome, reuse):
    """With a span, passes end at the last scored token: same numbers as full passes,
    on both strands, for SNVs sharing a position, an insertion and a deletion."""
    v = _variants(genome).iloc[[0, 1, 3, 4]]
    out = score_variants(model, genome, v, window=WINDOW, reduce="sum", span=12, strand="both",
                         reuse_prefix=reuse, progress=False)
    for i, r in enumerate(v.itertuples(index=False)):
        fwd, rev = (_span_by_hand(model, genome, r, 12, rv) for rv in (False, True))
        assert out["delta_ll_fwd"].iloc[i] == pytest.approx(fwd, abs=5e-5)  # fp32 sums of ~25 tokens
        assert out["delta_ll_rev"].iloc[i] == pytest.approx(rev, abs=5e-5)
    assert out["delta_ll"].abs().min() > 0


def test_masked_marginal(genome, tmp_path):
    from transformers import BertConfig, BertForMaskedLM

    from biointerp.models import load_model

    torch.manual_seed(0)
    BertForMaskedLM(BertConfig(vocab_size=300, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=32, max_position_embeddings=256)).save_pretrained(tmp_path / "mlm")
    m = load_model(f"hf:{tmp_path / 'mlm'}")
    m.mask_token_id = 257  # byte tokenizer: an id no base uses
    v = _variants(genome).iloc[[0, 3]]
    out = score_variants(m, genome, v, window=64, progress=False)
    assert out["status"].tolist() == ["ok", "unsupported"] and np.isnan(out["delta_ll"].iloc[1])
    r = v.iloc[0]
    vw = variant_sequences(genome, r.chrom, r.pos, r.ref, r.alt, 32, 32)
    ids, mask = m.tokenize([vw.ref_seq])
    ids[0, vw.offset] = 257
    lsm = torch.log_softmax(m.forward(ids, mask).logits[0, vw.offset].float(), -1)
    want = float(lsm[ord(r.alt)] - lsm[ord(r.ref)])
    assert out["delta_ll"].iloc[0] == pytest.approx(want, abs=1e-5)


def test_select_shard_covers_all():
    df = pd.DataFrame({"a": range(10)})
    parts = [select_shard(df, i, 3) for i in range(3)]
    assert sum(map(len, parts)) == 10 and pd.concat(parts)["a"].tolist() == list(range(10))


def _clinvar_subset(clinvar_vcf, path, n=8):
    """First n ClinVar records at BRCA1 exon 11 + one with a wrong REF + one on a contig not in the FASTA."""
    t = pysam.TabixFile(str(clinvar_vcf), encoding="utf-8")
    lines = list(t.fetch("17", 41245000, 41246000))[:n]
    f = lines[0].split("\t")
    f[3] = {"A": "C", "C": "G", "G": "T", "T": "A"}[f[3]]
    f[4] = "T" if f[3] != "T" else "A"
    bad = "\t".join(f)
    other = "\t".join(["13"] + lines[1].split("\t")[1:])
    with open(path, "w") as fh:
        fh.write("\n".join(list(t.header) + lines + [bad, other]) + "\n")
    return n + 2


def test_cli_score_real_clinvar_sharded(tmp_path, brca1_fasta, clinvar_vcf):
    vcf = tmp_path / "brca1.vcf"
    n = _clinvar_subset(clinvar_vcf, vcf)
    save_model(random_model(tiny_config(hidden_size=16, num_layers=8, num_attention_heads=2), seed=7),
               tmp_path / "model", card={"name": "tiny16"})
    runner = CliRunner()
    outs = []
    for i in range(2):
        out = tmp_path / f"s{i}.h5ad"
        res = runner.invoke(main, ["score", "--model", str(tmp_path / "model"), "--fasta", str(brca1_fasta),
                                   "--variants", str(vcf), "--out", str(out), "--window", "128",
                                   "--shard", str(i), "--n-shards", "2", "--info", "CLINICAL_SIGNIFICANCE"])
        assert res.exit_code == 0, res.output
        outs.append(str(out))
    res = runner.invoke(main, ["tables", "merge", *outs, "--out", str(tmp_path / "all.h5ad")])
    assert res.exit_code == 0, res.output
    a = read_scores(tmp_path / "all.h5ad")
    assert a.n_obs == n and "delta_ll" in list(a.var_names)
    st = a.obs["status"].tolist()
    assert st.count("ok") == n - 2 and "ref_mismatch" in st and "unknown_contig" in st
    d = np.asarray(a[:, "delta_ll"].X).ravel()
    assert np.isfinite(d[np.array(st) == "ok"]).all() and np.isnan(d[np.array(st) != "ok"]).all()
    assert set(a.obs["label"]) <= {"pathogenic", "benign", "other"} and a.obs["label"].iloc[0]
    assert a.uns["biointerp"]["window"] == 128 and "fasta_fingerprint" in a.uns["biointerp"]
    res = runner.invoke(main, ["tables", "show", str(tmp_path / "all.h5ad"), "-n", "3"])
    assert res.exit_code == 0 and "delta_ll" in res.output
    res = runner.invoke(main, ["score", "--model", str(tmp_path / "model"), "--fasta", str(brca1_fasta),
                               "--variants", str(vcf), "--out", str(tmp_path / "x.h5ad"), "--shard", "1"])
    assert res.exit_code != 0 and "--n-shards" in res.output
