"""Novel-family held-out contigs of the synthetic model organism."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from biointerp.synth import SynthConfig, generate_genome, make_variants, novel_contigs

SCRIPTS = Path(__file__).resolve().parents[1] / "probes" / "synth_ground_truth"


def _script(name: str):
    """A script of probes/synth_ground_truth/ loaded as a module."""
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _novel_variants():
    """Variants of a small genome with one novel-family contig, with the runs' ``test_set`` column."""
    b = generate_genome(SynthConfig(n_contigs=2, contig_length=30_000, variants_per_class=5, n_domain_families=4,
                                    novel_family_contigs=1))
    v = make_variants(b)
    v["test_set"] = np.where(v["families"] == "novel", "test_novel", v["split"])
    return v


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
    import pandas as pd

    mod = _script("per_class")
    v = _novel_variants()
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


def test_summarize_tables_model_vs_control(tmp_path):
    """probes/synth_ground_truth/summarize.py: per-class and root tables from run folders, signs kept."""
    import json

    import pandas as pd
    import torch
    from safetensors.torch import save_file

    from biointerp.probes.evaluate import compare_scores

    mods = {n: _script(n) for n in ("per_class", "summarize")}
    sm = mods["summarize"]
    v = _novel_variants()
    dam = (v["label"] == "damaging").to_numpy(float)
    rng = np.random.default_rng(0)
    runs = {}
    for run, signal in (("model", 2.0), ("control", 0.0)):
        d = tmp_path / run
        d.mkdir()
        s = pd.DataFrame({"variant_id": v["variant_id"], "delta_ll": -signal * dam + rng.normal(size=len(v))})
        # gram_eigh gets more signal than newton_schulz in the model run, sym_eigh less
        for name, k in (("covariance", 1.0), ("covariance_sym_eigh", 0.5), ("covariance_gram_eigh", 2.0),
                        ("linear", 1.0)):
            s[f"probe_{name}"] = k * signal * dam + rng.normal(size=len(v))
            card = {"training": {"epochs": 7, "best_epoch": 5}}
            save_file({"w": torch.zeros(1)}, str(d / f"{name}.safetensors"),
                      metadata={"biointerp_card": json.dumps(card)})
        names = ["probe_linear", "probe_covariance", "probe_covariance_sym_eigh", "probe_covariance_gram_eigh"]
        mods["per_class"].per_class(s, v, names + ["-delta_ll"], n_boot=20).to_csv(
            d / "per_class.tsv", sep="\t", index=False)
        for ts in ("test", "test_novel"):
            m = (v["test_set"] == ts).to_numpy()
            sc = {n: s.loc[m, n].to_numpy() for n in names} | {"-delta_ll": -s.loc[m, "delta_ll"].to_numpy(),
                                                                "baseline:x": np.zeros(m.sum())}
            kinds = {n: "model" for n in names} | {"-delta_ll": "zero-shot", "baseline:x": "baseline"}
            cmp = compare_scores(dam[m], sc, kinds, strata={"variant_class": v.loc[m, "consequence"].str.len() % 2},
                                 n_boot=50)
            (d / f"eval_{ts}.json").write_text(json.dumps({"comparison": cmp}, default=float))
        (d / "train_seconds.tsv").write_text("probe\tseconds\ncovariance\t3\ncovariance\t4\ncovariance_sym_eigh\t5\n")
        runs[run] = d
    pc = sm.per_class_table(runs, "probe_linear")
    assert pc.count("\n") == 2 + 1 + v[v["test_set"] == "test"]["consequence"].nunique() - 1
    assert pc.splitlines()[0].count("|") == 6  # class + model/control x shared/novel
    rt = sm.roots_table(runs)
    rows = [r.split(" | ") for r in rt.splitlines()[2:]]
    assert len(rows) == 2 * 2 * 3
    gram = [r for r in rows if r[0] == "| model" and r[2] == "gram_eigh"]
    sym = [r for r in rows if r[0] == "| model" and r[2] == "sym_eigh"]
    assert all(r[6].startswith("+") for r in gram) and all(r[6].startswith("-") for r in sym)
    ns = [r for r in rows if r[2] == "newton_schulz"]
    assert all(r[3] == "7 (5)" and r[4] == "4" and r[6] == "–" for r in ns)  # last timing of a rerun kept
    assert all(r[4] == "nan" for r in rows if r[2] == "gram_eigh")  # no timing recorded: said so


def test_root_seeds_pairs_each_root_with_newton_schulz_of_its_seed():
    """probes/synth_ground_truth/root_seeds.py: differences are root minus newton_schulz of the same seed."""
    import pandas as pd

    mod = _script("root_seeds")
    rng = np.random.default_rng(1)
    n = 400
    lab = pd.DataFrame({"variant_id": [f"v{i}" for i in range(n)], "label": np.where(np.arange(n) % 2, "damaging",
                                                                                         "neutral"),
                        "test_set": np.where(np.arange(n) < 300, "test", "train")})
    y = (lab["label"] == "damaging").to_numpy(float)
    s = pd.DataFrame({"variant_id": lab["variant_id"]})
    for seed in (0, 1):
        s[mod.column("newton_schulz", seed)] = y + rng.normal(size=n)
        s[mod.column("gram_eigh", seed)] = 3 * y + rng.normal(size=n)  # much better in every seed
    assert mod.column("gram_eigh", 0) == "probe_covariance_gram_eigh"
    assert mod.column("newton_schulz", 2) == "probe_covariance_s2"
    tab = mod.root_seeds(s, lab, ["newton_schulz", "gram_eigh"], [0, 1], n_boot=100)
    assert set(tab["test_set"]) == {"test"} and (tab["n"] == 300).all()
    g = tab[tab["root"] == "gram_eigh"]
    assert (g["delta"] > 0.1).all() and (g["delta_lo"] > 0).all()
    ns = tab[tab["root"] == "newton_schulz"]
    assert np.allclose(g["delta"].to_numpy(), g["auroc"].to_numpy() - ns["auroc"].to_numpy())
    summ = mod.summary(tab).set_index("root")
    assert summ.loc["gram_eigh", "n_seeds"] == 2 and summ.loc["gram_eigh", "n_separated"] == 2
    assert summ.loc["newton_schulz", "n_separated"] == 0


def test_domain_pair_ranks_the_two_missense_classes_only():
    """probes/synth_ground_truth/domain_pair.py: missense_domain vs missense_outside_domain, per test set."""
    import pandas as pd

    mod = _script("domain_pair")
    v = _novel_variants()
    # a score that only tells coding from non-coding: perfect per class, chance on the matched pair
    coding = v["consequence"].str.contains("missense|nonsense|synonymous|frameshift|inframe|start|stop")
    s = pd.DataFrame({"variant_id": v["variant_id"], "coding": coding.astype(float),
                      "domain": (v["consequence"] == "missense_domain").astype(float)})
    tab = mod.domain_pair(s, v, ["coding", "domain", "-domain"], n_boot=20).set_index(["test_set", "score"])
    assert set(tab.index.get_level_values(0)) == {"test", "test_novel"}
    for ts in ("test", "test_novel"):
        n = v[(v["test_set"] == ts) & v["consequence"].isin(mod.PAIR)].shape[0]
        assert tab.loc[(ts, "coding"), "n"] == n and tab.loc[(ts, "coding"), "auroc"] == 0.5
        assert tab.loc[(ts, "domain"), "auroc"] == 1.0 and tab.loc[(ts, "-domain"), "auroc"] == 0.0
