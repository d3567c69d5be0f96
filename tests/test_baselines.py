"""Model-free baselines, per-stratum figures and the 'better than baselines' verdict."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from biointerp.cli import main
from biointerp.probes.baselines import baselines_for, variant_features, with_baselines
from biointerp.probes.evaluate import compare_scores, comparison_markdown


def _table(n=1200, seed=0):
    """Indels mostly positive, SNVs mostly negative; C>T SNVs more often positive; a split column."""
    rng = np.random.default_rng(seed)
    kind = rng.choice(["snv", "del", "ins"], n, p=[0.6, 0.25, 0.15])
    ref = np.where(kind == "del", "AT", np.where(kind == "ins", "A", rng.choice(list("ACGT"), n)))
    alt = np.where(kind == "del", "A", np.where(kind == "ins", "AGG", ""))
    for i in np.flatnonzero(kind == "snv"):
        alt[i] = rng.choice([b for b in "ACGT" if b != ref[i]])
    p = np.where(kind != "snv", 0.85, np.where((ref == "C") & (alt == "T"), 0.6, 0.2))
    y = (rng.uniform(size=n) < p).astype(float)
    t = pd.DataFrame({"variant_id": [f"1:{100 + i}:{r}:{a}" for i, (r, a) in enumerate(zip(ref, alt))],
                      "ref": ref, "alt": alt, "label": np.where(y == 1, "pathogenic", "benign"),
                      "split": np.where(np.arange(n) < n // 2, "train", "test")})
    return t.set_index("variant_id"), y, kind


def test_variant_features():
    t = pd.DataFrame({"ref": ["A", "C", "AT", "A", "AC", "ATTT"], "alt": ["G", "T", "A", "ATTT", "GT", "A"],
                      "consequence": ["missense", "", "frameshift", "inframe", "missense", "inframe"]})
    f = variant_features(t)
    assert f["variant_class"].tolist() == ["snv", "snv", "deletion", "insertion", "mnv", "deletion"]
    assert f["substitution"].tolist() == ["A>G", "C>T", "deletion", "insertion", "mnv", "deletion"]
    assert f["indel_length"].tolist() == ["0", "0", "1/not3k", "3/3k", "0", "3/3k"]
    assert f["consequence"].tolist()[1] == "NA"
    # ids alone are enough
    ids = pd.DataFrame(index=["1:5:A:G", "1:9:AT:A"])
    assert variant_features(ids)["variant_class"].tolist() == ["snv", "deletion"]


def test_baselines_fitted_on_training_rows_only():
    t, y, kind = _table()
    train = (t["split"] == "train").to_numpy()
    y_flipped = y.copy()
    y_flipped[~train] = 1 - y_flipped[~train]  # test labels must not change the baseline scores
    a, how = baselines_for(t, y, train, ~train)
    b, _ = baselines_for(t, y_flipped, train, ~train)
    assert "training split" in how
    pd.testing.assert_frame_equal(a, b)
    # the variant-class baseline is the smoothed training rate of each class
    ytr, ktr = y[train], kind[train]
    snv_rate = (ytr[ktr == "snv"].sum() + ytr.mean()) / ((ktr == "snv").sum() + 1)
    assert a.loc[kind[~train] == "snv", "variant_class"].iloc[0] == pytest.approx(snv_rate)
    # no split: cross-fitted, every row scored without its own label
    c, how = baselines_for(t, y, None, np.ones(len(t), bool))
    assert "cross-fitted" in how and np.isfinite(c.to_numpy()).all()


def test_composition_flag_and_verdicts():
    t, y, kind = _table(2000, seed=1)
    rng = np.random.default_rng(2)
    test = (t["split"] == "test").to_numpy()
    composition = (kind != "snv") + 0.01 * rng.normal(size=len(y))  # ranks indels first, random within class
    signal = y + rng.normal(size=len(y))  # real within-class signal, ignores the class
    cmp = with_baselines(t, y, {"composition": composition, "signal": signal}, test, ~test, n_boot=300)
    within = {r["score"]: r for r in cmp["within"] if r["by"] == "variant_class"}
    assert within["composition"]["carried_by_composition"]
    assert abs(within["composition"]["auroc_within"] - 0.5) < 0.08
    assert not within["signal"]["carried_by_composition"] and within["signal"]["auroc_within"] > 0.7
    verd = {(r["score"], r["basis"]): r for r in cmp["verdicts"]}
    assert verd[("signal", "within:variant_class")]["better"]
    assert not verd[("composition", "within:variant_class")]["better"]
    # overall, the composition score does not clear the variant-class / combined baselines
    assert not verd[("composition", "overall")]["better"]
    assert verd[("composition", "overall")]["best_baseline"].startswith("baseline:")
    names = {r["score"] for r in cmp["overall"]}
    assert {"baseline:variant_class", "baseline:substitution", "baseline:combined"} <= names
    md = comparison_markdown(cmp, cmp["baselines_fitted"])
    assert "carried by stratum composition" in md and "variant_class=snv" in md


def test_paired_intervals_are_reproducible_and_contain_the_point():
    t, y, kind = _table(600, seed=3)
    s = {"a": y + np.random.default_rng(0).normal(size=len(y)), "b": (kind != "snv").astype(float)}
    c1 = compare_scores(y, s, {"a": "model", "b": "baseline"}, {"variant_class": kind}, n_boot=200, seed=5)
    c2 = compare_scores(y, s, {"a": "model", "b": "baseline"}, {"variant_class": kind}, n_boot=200, seed=5)
    assert c1["overall"] == c2["overall"]
    for r in c1["overall"] + [r for r in c1["strata"] if np.isfinite(r["auroc"])]:
        assert r["auroc_lo"] <= r["auroc"] + 1e-9 and r["auroc"] <= r["auroc_hi"] + 1e-9


def test_paired_difference_interval():
    """The AUROC difference of two scores on the same resamples: clearly apart when one
    score is much better, containing 0 for identical or exchangeable scores."""
    from biointerp.probes.evaluate import auroc_difference

    rng = np.random.default_rng(7)
    n = 400
    y = (rng.uniform(size=n) < 0.4).astype(float)
    good = y + rng.normal(scale=0.7, size=n)  # AUROC ~0.85
    weak = y + rng.normal(scale=3.0, size=n)  # AUROC ~0.6
    d = auroc_difference(y, good, weak, n_boot=500)
    assert d["n"] == n and d["separated"] and 0 < d["delta_lo"] <= d["delta"] <= d["delta_hi"]
    assert d["delta"] == pytest.approx(d["auroc_a"] - d["auroc_b"])
    rev = auroc_difference(y, weak, good, n_boot=500)
    assert rev["separated"] and rev["delta_hi"] < 0
    same = auroc_difference(y, good, good.copy(), n_boot=500)
    assert same["delta"] == 0 and same["delta_lo"] == 0 and same["delta_hi"] == 0 and not same["separated"]
    other = auroc_difference(y, good, y + rng.normal(scale=0.7, size=n), n_boot=500)  # same quality, new noise
    assert other["delta_lo"] < 0 < other["delta_hi"] and not other["separated"]
    # paired: narrower than what two separate intervals suggest for correlated scores
    close = good + rng.normal(scale=0.2, size=n)
    cmp = compare_scores(y, {"a": good, "b": close}, {"a": "model", "b": "model"}, n_boot=500)
    ov = {r["score"]: r for r in cmp["overall"]}
    pair = cmp["pairs"][0]
    assert pair["delta_hi"] - pair["delta_lo"] < 0.5 * (ov["a"]["auroc_hi"] - ov["a"]["auroc_lo"])
    with pytest.raises(ValueError, match="both classes"):
        auroc_difference(np.ones(10), good[:10], weak[:10])


def test_pairs_cover_every_method_pair_and_the_best_baselines():
    t, y, kind = _table(1000, seed=6)
    t["consequence"] = np.where(y == 1, "bad", "fine")  # an annotation that defines the label
    rng = np.random.default_rng(1)
    test = (t["split"] == "test").to_numpy()
    scores = {"p1": y + rng.normal(size=len(y)), "p2": y + rng.normal(scale=4, size=len(y))}
    cmp = with_baselines(t, y, scores, test, ~test, zero_shot=False, n_boot=200)
    pairs = {(r["basis"], r["a"], r["b"], r["comparison"]): r for r in cmp["pairs"]}
    assert ("overall", "p1", "p2", "pair") in pairs and ("within:variant_class", "p1", "p2", "pair") in pairs
    best = pairs[("overall", "p1", "baseline:consequence", "best baseline")]
    assert best["separated"] and best["favours"] == "baseline:consequence"  # perfect by construction
    free = [r for r in cmp["pairs"] if r["comparison"] == "best annotation-free baseline"]
    assert free and all(r["b"] in ("baseline:variant_class", "baseline:substitution", "baseline:indel_length")
                        for r in free)
    p12 = pairs[("overall", "p1", "p2", "pair")]
    assert p12["separated"] and p12["favours"] == "p1"
    md = comparison_markdown(cmp, cmp["baselines_fitted"])
    assert "Paired differences" in md and "best annotation-free baseline" in md


def test_cli_evaluate_shows_baselines(tmp_path):
    t, y, kind = _table(800, seed=4)
    rng = np.random.default_rng(0)
    t["probe"] = (kind != "snv") + 0.05 * rng.normal(size=len(t))
    t["delta_ll"] = rng.normal(size=len(t))
    t.reset_index().to_parquet(tmp_path / "scores.parquet")
    r = CliRunner().invoke(main, ["probe", "evaluate", "--scores", str(tmp_path / "scores.parquet"), "--score", "probe",
                                  "--split-column", "split", "--n-boot", "100", "--out", str(tmp_path / "m.json"),
                                  "--out-dir", str(tmp_path / "ev")], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "baseline:variant_class" in r.output and "training split" in r.output
    res = json.loads((tmp_path / "m.json").read_text())
    kinds = res["comparison"]["kinds"]
    assert kinds["probe"] == "model" and kinds["-delta_ll"] == "zero-shot"
    assert kinds["baseline:substitution"] == "baseline"
    assert len(res["predictions"]["variant_id"]) == 400  # the test rows
    md = (tmp_path / "ev" / "comparison.md").read_text()
    assert "carried by stratum composition" in md
    long = pd.read_csv(tmp_path / "ev" / "comparison.tsv", sep="\t")
    assert {"all", "snv", "deletion", "insertion"} <= set(long["stratum"])


def test_training_and_scoring_reports_show_baselines(tmp_path):
    import anndata as ad

    from biointerp.report import scoring_report, training_report

    t, y, kind = _table(600, seed=6)
    rng = np.random.default_rng(1)
    labels = t.reset_index()
    labels["consequence"] = np.where(kind == "snv", "missense", "frameshift")
    test = labels[labels["split"] == "test"]
    probe = (kind != "snv") + 0.05 * rng.normal(size=len(t))
    ev = {"variant_id": test["variant_id"].tolist(), "pathogenicity": probe[labels["split"] == "test"].tolist()}
    (tmp_path / "covariance.json").write_text(json.dumps({"metrics": {"n": len(test)}, "predictions": ev}))
    obs = labels.set_index("variant_id")
    obs["status"] = "ok"
    zs = ad.AnnData(X=rng.normal(size=(len(obs), 1)), obs=obs)
    zs.var_names = ["delta_ll"]
    table = training_report([tmp_path / "covariance.json"], labels, tmp_path / "tr", zeroshot=zs, n_boot=100)
    assert {"probe:covariance", "zero-shot:delta_ll", "baseline:variant_class", "baseline:consequence",
            "baseline:combined"} <= set(table["method"])
    row = table.set_index("method").loc["probe:covariance"]
    assert row["carried_by_composition"] and not row["better_than_baselines_within"]
    md = (tmp_path / "tr" / "report.md").read_text()
    assert "fitted on the training split only" in md and "variant_class=snv" in md
    s = scoring_report(zs, tmp_path / "sr", n_boot=50)
    assert s["n_variants"] == len(obs)
    md = (tmp_path / "sr" / "report.md").read_text()
    assert "beside the model-free baselines" in md and "baseline:substitution" in md
