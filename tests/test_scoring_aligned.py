"""Length-aware zero-shot scores for indels (``reduce="aligned"``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from biointerp.genome import Genome, reverse_complement, variant_sequences
from biointerp.models import StripedHyenaModel, random_model, tiny_config
from biointerp.scoring import score_variants

WINDOW = 128


@pytest.fixture(scope="module")
def setup(brca1_fasta):
    model = StripedHyenaModel(random_model(tiny_config(hidden_size=16, num_layers=4, num_attention_heads=2), seed=3))
    genome = Genome(brca1_fasta)
    p = 41245003
    s = genome.fetch("chr17", p, p + 20)
    rows = [("chr17", p, s[0], "A" if s[0] != "A" else "C"),       # SNV
            ("chr17", p + 9, s[9], s[9] + "AAAAAAAAAA"),           # 10-bp insertion
            ("chr17", p + 12, s[12:16], s[12])]                     # 3-bp deletion
    v = pd.DataFrame(rows, columns=["chrom", "pos", "ref", "alt"])
    v["variant_id"] = v.chrom + ":" + v.pos.astype(str) + ":" + v.ref + ":" + v.alt
    return model, genome, v


def _by_hand(model, genome, r, rev=False):
    vw = variant_sequences(genome, r.chrom, r.pos, r.ref, r.alt, WINDOW // 2, WINDOW - WINDOW // 2, same_length=False)
    out = []
    for seq, n in ((vw.ref_seq, len(r.ref)), (vw.alt_seq, len(r.alt))):
        if rev:
            seq = reverse_complement(seq)
        lp = model.log_probs(model.tokenize([seq])[0])[0].double()  # token t at index t-1
        a0 = len(seq) - vw.offset - n if rev else vw.offset
        a1 = a0 + n
        out.append((float(lp[a1 - 1:].sum()), float(lp[a0 - 1:a1 - 1].sum())))
    (rf, ro), (af, ao) = out
    return af - rf, ao - ro, len(vw.ref_seq) - (vw.offset + len(r.ref))


def test_aligned_flank_and_allele_terms(setup):
    model, genome, v = setup
    al = score_variants(model, genome, v, window=WINDOW, reduce="aligned", progress=False)
    sm = score_variants(model, genome, v, window=WINDOW, reduce="sum", progress=False)
    for i, r in enumerate(v.itertuples()):
        flank, own, n_flank = _by_hand(model, genome, r)
        assert n_flank > 0
        assert al["delta_ll"].iloc[i] == pytest.approx(flank, abs=1e-4)
        assert al["delta_ll_allele"].iloc[i] == pytest.approx(own, abs=1e-4)
    # the upstream tokens cancel: flank + allele = the summed delta, for SNVs and indels alike
    np.testing.assert_allclose(al["delta_ll"] + al["delta_ll_allele"], sm["delta_ll"], atol=1e-4)
    # the flank term does not grow with the inserted bases' own LL: the 10-bp insertion's allele term is
    # a sum over its 11 tokens, kept apart
    assert abs(al["delta_ll_allele"].iloc[1]) > abs(al["delta_ll_allele"].iloc[0])


def test_aligned_both_strands(setup):
    model, genome, v = setup
    both = score_variants(model, genome, v, window=WINDOW, reduce="aligned", strand="both", progress=False)
    flank, own, _ = _by_hand(model, genome, v.iloc[2], rev=True)
    fwd_flank, fwd_own, _ = _by_hand(model, genome, v.iloc[2])
    assert both["delta_ll_rev"].iloc[2] == pytest.approx(flank, abs=1e-4)
    assert both["delta_ll"].iloc[2] == pytest.approx((flank + fwd_flank) / 2, abs=1e-4)
    assert both["delta_ll_allele"].iloc[2] == pytest.approx((own + fwd_own) / 2, abs=1e-4)
