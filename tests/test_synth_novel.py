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


def test_per_class_script_orients_scores_and_keeps_test_sets_apart():
    """probes/synth_ground_truth/per_class.py: a class vs the other label, per test set, '-' flips a score."""
    import importlib.util
    from pathlib import Path

    import numpy as np
    import pandas as pd

    path = Path(__file__).resolve().parents[1] / "probes" / "synth_ground_truth" / "per_class.py"
    spec = importlib.util.spec_from_file_location("per_class", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    b = generate_genome(SynthConfig(n_contigs=2, contig_length=30_000, variants_per_class=5, n_domain_families=4,
                                    novel_family_contigs=1))
    v = make_variants(b)
    v["test_set"] = np.where(v["families"] == "novel", "test_novel", v["split"])
    dam = (v["label"] == "damaging").to_numpy(float)
    rng = np.random.default_rng(0)
    s = pd.DataFrame({"variant_id": v["variant_id"], "perfect": dam, "noise": rng.normal(size=len(v)),
                      "delta_ll": -dam})
    tab = mod.per_class(s, v, ["perfect", "-delta_ll", "delta_ll", "noise"], n_boot=50)
    assert set(tab["test_set"]) == {"test", "test_novel"}  # training rows are never scored
    n_all = tab[(tab["class"] == "all") & (tab["score"] == "perfect")].set_index("test_set")["n"]
    assert n_all.to_dict() == v[v["split"] == "test"].groupby("test_set").size().to_dict()
    assert (tab.loc[tab["score"].isin(["perfect", "-delta_ll"]), "auroc"] == 1.0).all()
    assert (tab.loc[tab["score"] == "delta_ll", "auroc"] == 0.0).all()
    per = tab[(tab["score"] == "noise") & (tab["class"] != "all")]
    assert per["auroc"].between(0, 1).all() and (per["lo"] < per["hi"]).all()
