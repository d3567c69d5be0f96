"""Cohort biomarkers on the real TCGA colon methylation cohort and on a simulated cohort with planted DMRs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from scipy import stats

from biointerp.cli import main
from biointerp.cohort import CohortError, biomarker_probe, load_methylation, rank_features, top_features

MATRIX = "tcga_coad_methylation_beta.tsv.gz"
SHEET = "tcga_coad_samples.tsv"


@pytest.fixture(scope="module")
def tcga_files(shared_data) -> tuple[Path, Path]:
    d = shared_data / "cohorts"
    for name in (MATRIX, SHEET):
        if not (d / name).exists():
            pytest.fail(f"real test data missing: {d / name}")
    return d / MATRIX, d / SHEET


@pytest.fixture(scope="module")
def tcga(tcga_files):
    return rank_features(load_methylation(*tcga_files, "condition", case="tumor", control="normal"))


@pytest.fixture(scope="module")
def synth_cohort(tmp_path_factory):
    from biointerp.synth import PRESETS, SynthConfig, generate_genome, make_methylation_cohort, write_cohort

    g = generate_genome(SynthConfig(**PRESETS["tiny"], seed=7))
    beta, samples, truth = make_methylation_cohort(g.contigs, g.elements, n_cases=25, n_controls=35, n_cpgs=300,
                                                   n_dmr_islands=3, effect=0.3, missing_rate=0.05, seed=1)
    out = tmp_path_factory.mktemp("cohort")
    paths = write_cohort(beta, samples, truth, out)  # the files `biointerp synth cohort` writes
    return paths


# ------------------------------------------------------------------------------------------- TCGA
def test_tcga_every_sample_and_missing_value_accounted_for(tcga, tcga_files):
    sheet = pd.read_csv(tcga_files[1], sep="\t")
    raw = pd.read_csv(tcga_files[0], sep="\t", index_col=0)
    assert tcga.shape == (334, 1000)
    assert list(tcga.obs_names) == list(sheet["sample"])
    assert set(tcga.obs["status"]) == {"ok"}
    assert tcga.obs["label"].sum() == 296 and (tcga.obs["label"] == 0).sum() == 38
    assert (tcga.obs.loc[tcga.obs["condition"] == "tumor", "label"] == 1).all()
    # missing values kept as NaN, counted per feature, and in the same cells as the file
    assert np.isnan(tcga.X).sum() == raw.isna().sum().sum() == tcga.var["n_missing"].sum() > 0
    np.testing.assert_array_equal(tcga.var["n_missing"].to_numpy(), raw.isna().sum(1).to_numpy())
    np.testing.assert_allclose(tcga["TCGA-AA-3492"].X[0], raw["TCGA-AA-3492"].to_numpy(), rtol=1e-6)
    c = tcga.uns["biointerp"]["counts"]
    assert (c["matched"], c["cases"], c["controls"], c["missing_values"]) == (334, 296, 38, 516)


def test_tcga_ranking_statistics(tcga):
    v = tcga.var
    assert tcga.uns["biointerp"]["test"] == "wilcoxon"
    assert (v["rank"] > 0).all() and sorted(v["rank"]) == list(range(1, 1001))
    # q-values are BH of the p-values: monotone in p, never below p
    by_p = v.sort_values("pval")
    assert (np.diff(by_p["qval"].to_numpy()) >= -1e-12).all() and (v["qval"] >= v["pval"] - 1e-15).all()
    # the top-ranked CpGs separate tumor from normal (measured: top 20 AUROC 0.96-0.99 or 0.02-0.05)
    top = top_features(tcga, 20)
    sep = np.maximum(top["auroc"], 1 - top["auroc"])
    assert (sep > 0.9).all() and (top["qval"] < 1e-12).all() and (top["delta"].abs() > 0.2).all()
    assert ((top["auroc"] > 0.5) == (top["delta"] > 0)).all()
    # about half the panel is differentially methylated (measured 513 of 1000 at q < 0.05)
    assert 400 < (v["qval"] < 0.05).sum() < 650
    # NaN-aware: a feature with missing values matches scipy / the definition of AUROC on its observed cells
    f = v.index[v["n_missing"].to_numpy().argmax()]
    x = tcga[:, f].X[:, 0].astype(float)
    y = tcga.obs["label"].to_numpy()
    a, b = x[(y == 1) & ~np.isnan(x)], x[(y == 0) & ~np.isnan(x)]
    assert v.loc[f, "n_case"] + v.loc[f, "n_control"] == 334 - v.loc[f, "n_missing"]
    r = stats.mannwhitneyu(a, b)
    assert v.loc[f, "pval"] == pytest.approx(r.pvalue, rel=1e-9)
    auc = ((a[:, None] > b[None]).sum() + 0.5 * (a[:, None] == b[None]).sum()) / (len(a) * len(b))
    assert v.loc[f, "auroc"] == pytest.approx(auc)
    assert v.loc[f, "delta"] == pytest.approx(a.mean() - b.mean(), abs=1e-6)


def test_tcga_probe_held_out_stratified(tcga):
    res = biomarker_probe(tcga, test_frac=0.3, n_boot=300, seed=0)
    m = res["metrics"]
    # measured: held-out AUROC 0.999 (CI 0.995-1.000) on 101 samples, 90 tumor / 11 normal
    assert m["auroc"] > 0.95 and m["auroc_ci"][0] > 0.9 and m["auroc_ci"][0] <= m["auroc"] <= m["auroc_ci"][1]
    split = res["split"]
    y = tcga.obs.loc[split.index, "label"]
    assert m["n_test"] == (split == "test").sum() == m["n_pos"] + m["n_neg"] == 101
    assert abs(y[split == "test"].mean() - y.mean()) < 0.02 and m["n_neg"] >= 10  # stratified
    # imputation and standardisation fitted on the train samples only
    w = res["weights"].set_index("feature")
    f = tcga.var.index[tcga.var["n_missing"].to_numpy().argmax()]
    tr = split[split == "train"].index
    assert w.loc[f, "train_mean"] == pytest.approx(np.nanmean(tcga[tr, f].X.astype(float)), abs=1e-5)
    assert len(w) == 1000 and np.isfinite(tcga.var["probe_weight"]).all()
    assert set(tcga.obs["split"]) == {"train", "test"} and tcga.uns["biointerp"]["probe"]["auroc"] == m["auroc"]


def test_mismatched_ids_bad_labels_and_missing_are_flagged_not_dropped(tcga_files, tmp_path):
    raw = pd.read_csv(tcga_files[0], sep="\t", index_col=0).iloc[:60]
    sheet = pd.read_csv(tcga_files[1], sep="\t")
    keep = list(sheet["sample"][:30]) + list(sheet["sample"][-30:])  # 30 normal + 30 tumor
    sheet = sheet[sheet["sample"].isin(keep)].reset_index(drop=True)
    mat = raw[keep].drop(columns=keep[:2])  # two sheet samples without data
    mat["EXTRA-1"] = 0.5  # a matrix column without a sheet row
    mat[keep[5]] = np.nan  # a sample with every value missing
    mat.iloc[3] = np.nan  # an all-missing feature
    sheet.loc[7, "condition"] = "metastasis"
    sheet.loc[8, "condition"] = np.nan
    mat.to_csv(tmp_path / "m.tsv.gz", sep="\t")
    sheet.to_csv(tmp_path / "s.tsv", sep="\t", index=False)
    a = load_methylation(tmp_path / "m.tsv.gz", tmp_path / "s.tsv", "condition", case="tumor", control="normal")
    st = a.obs["status"].astype(str)
    assert a.n_obs == 61 and list(a.obs_names[:60]) == list(sheet["sample"])
    assert st[keep[0]] == st[keep[1]] == "not_in_matrix" and st["EXTRA-1"] == "not_in_sheet"
    assert st[keep[5]] == "all_missing" and st[keep[7]] == st[keep[8]] == "no_label"
    assert "metastasis" in a.obs.loc[keep[7], "status_detail"]
    assert (st == "ok").sum() == 55 and a.var["status"].iloc[3] == "all_missing"
    c = a.uns["biointerp"]["counts"]
    assert (c["matched"], c["not_in_matrix"], c["not_in_sheet"], c["no_label"], c["all_missing_samples"],
            c["all_missing_features"]) == (58, 2, 1, 2, 1, 1)
    rank_features(a)
    assert a.var["rank"].iloc[3] == 0 and np.isnan(a.var["pval"].iloc[3])
    assert a.var["n_case"].max() + a.var["n_control"].max() == 55


def test_clear_errors(tcga_files, tmp_path):
    m, s = tcga_files
    with pytest.raises(CohortError, match=r"'tumour'.*'tumor' \(296\)"):
        load_methylation(m, s, "condition", case="tumour")
    with pytest.raises(CohortError, match="label column 'cond' not in"):
        load_methylation(m, s, "cond")
    pd.DataFrame({"sample": ["x1", "x2"], "condition": ["tumor", "normal"]}).to_csv(tmp_path / "s.tsv", sep="\t",
                                                                                       index=False)
    with pytest.raises(CohortError, match="0 matched"):
        load_methylation(m, tmp_path / "s.tsv")
    pd.DataFrame({"sample": ["TCGA-AA-3492", "TCGA-AA-3494"], "condition": ["x", "y"]}).to_csv(tmp_path / "t.tsv", sep="\t", index=False)
    with pytest.raises(CohortError, match="--case"):
        load_methylation(m, tmp_path / "t.tsv")


# ------------------------------------------------------------------------------------------ synthetic
def test_synthetic_planted_loci_rank_at_the_top(synth_cohort):
    truth = pd.read_csv(synth_cohort["truth"], sep="\t").set_index("cpg")
    a = rank_features(load_methylation(synth_cohort["beta"], synth_cohort["samples"]))  # case/control inferred
    assert a.uns["biointerp"]["case"] == ["case"] and a.uns["biointerp"]["control"] == ["control"]
    assert a.shape == (60, len(truth)) and a.var["n_missing"].sum() > 0
    dmr = truth.loc[a.var_names, "dmr"].to_numpy()
    k = int(dmr.sum())
    assert k >= 5
    top = a.var["rank"].to_numpy()
    assert set(np.flatnonzero(top <= k)) == set(np.flatnonzero(dmr))  # every planted CpG in the top k
    assert (a.var["qval"][dmr] < 1e-4).all() and (a.var["auroc"][dmr] > 0.9).all()
    assert (a.var["delta"][dmr] - 0.3).abs().mean() < 0.08
    assert (a.var["qval"][~dmr] < 0.05).mean() < 0.05


def test_samples_by_features_csv_reads_the_same(synth_cohort, tmp_path):
    a = load_methylation(synth_cohort["beta"], synth_cohort["samples"])
    beta = pd.read_csv(synth_cohort["beta"], sep="\t", index_col=0)
    beta.T.iloc[::-1].to_csv(tmp_path / "t.csv")  # samples as rows, reversed order, CSV
    b = load_methylation(tmp_path / "t.csv", synth_cohort["samples"], case="case")
    assert b.uns["biointerp"]["orientation"] == "samples_x_features"
    assert list(b.obs_names) == list(a.obs_names) and list(b.var_names) == list(a.var_names)
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.obs["label"], b.obs["label"])


def test_cli_biomarkers_on_synthetic_cohort(synth_cohort, tmp_path):
    import anndata as ad

    args = ["cohort", "biomarkers", "--matrix", str(synth_cohort["beta"]), "--samples", str(synth_cohort["samples"]),
            "--label-column", "condition", "--case", "case", "--control", "control", "--n-boot", "100",
            "--out", str(tmp_path / "b.h5ad"), "--top", "5", "--plot", str(tmp_path / "v.png")]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    assert "held-out AUROC" in r.output and "60 of 60 sheet samples matched" in r.output
    assert (tmp_path / "v.png").stat().st_size > 1000
    b = ad.read_h5ad(tmp_path / "b.h5ad")
    assert b.uns["biointerp"]["test"] == "wilcoxon" and {"auroc", "qval", "rank", "probe_weight"} <= set(b.var)
    r = CliRunner().invoke(main, args[:-4] + ["--no-probe", "--json"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.output[r.output.index("{"):])
    truth = pd.read_csv(synth_cohort["truth"], sep="\t").set_index("cpg")
    assert all(truth.loc[t["cpg"], "dmr"] for t in s["top"]) and s["probe"] is None
    r = CliRunner().invoke(main, args[:8] + ["--case", "tumor", "--out", str(tmp_path / "x.h5ad")])
    assert r.exit_code != 0 and "unknown case/control value 'tumor'" in r.output and "'case' (25)" in r.output
    assert "--label-column" in CliRunner().invoke(main, ["cohort", "biomarkers", "--help"]).output
