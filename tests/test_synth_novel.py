"""Novel-family held-out contigs of the synthetic model organism."""

from __future__ import annotations

from biointerp.synth import SynthConfig, generate_genome, make_variants, novel_contigs


def test_novel_family_contig_keeps_the_rest_and_shares_no_family():
    kw = dict(n_contigs=2, contig_length=30_000, variants_per_class=5, n_domain_families=4)
    a = generate_genome(SynthConfig(**kw))
    b = generate_genome(SynthConfig(**kw, novel_family_contigs=1))
    assert list(b.contigs) == ["synth1", "synth2", "synth3"] and novel_contigs(b) == ["synth3"]
    assert all(a.contigs[k] == b.contigs[k] for k in a.contigs)  # byte-identical ordinary contigs
    assert a.elements.equals(b.elements[b.elements["chrom"] != "synth3"].reset_index(drop=True))
    assert "novel_family_contigs" not in a.config.to_dict()  # old configs / model cards unchanged
    dom = b.elements[b.elements["type"] == "polypeptide_domain"]
    fam = {c: set(dom.loc[dom["chrom"] == c, "name"]) for c in b.contigs}
    assert fam["synth3"] and not fam["synth3"] & (fam["synth1"] | fam["synth2"])
    assert all(n.startswith("NOVEL_DOM") for n in fam["synth3"])
    va, vb = make_variants(a), make_variants(b)
    assert "families" not in va.columns
    same = vb[vb["chrom"] != "synth3"].drop(columns="families").reset_index(drop=True)
    assert same.equals(va)  # the ordinary contigs' variants do not change
    test = vb[vb["split"] == "test"]
    assert set(test["chrom"]) == {"synth2", "synth3"}
    assert set(zip(test["chrom"], test["families"])) == {("synth2", "shared"), ("synth3", "novel")}
    assert (test["families"] == "novel").sum() > 20
