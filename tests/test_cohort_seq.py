"""Cohorts from sequence: sample sheets, VCF haplotypes, methylation encodings, shared embeddings,
cross-validated probes, probe extension and the CLI, on small generated data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from biointerp.cli import main
from biointerp.cohort import CohortError, rank_features, region_candidates
from biointerp.cohort_seq import (SequenceSet, methylation_sequences, read_bedmethyl, read_beta_matrix,
                                  read_regions, read_sample_sheet, vcf_sequences)

REF = ("ACGTACGTTA" "CCGGATCGAT" "TTAGCGCATG" "CAGTCGACTA" "GGCATCGTAC") * 2  # 100 bp, many CpGs


@pytest.fixture(scope="module")
def tiny_model():
    from biointerp.models import StripedHyenaModel, random_model, tiny_config

    return StripedHyenaModel(random_model(tiny_config(hidden_size=16, num_layers=8, num_attention_heads=2), seed=3),
                             name="tiny")


def _write_vcf(path: Path, samples: list[str], rows: list[tuple]) -> Path:
    import pysam

    txt = path.with_suffix("")
    with open(txt, "w") as fh:
        fh.write("##fileformat=VCFv4.2\n##contig=<ID=chrT,length=100>\n"
                 '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n')
        fh.write("#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t" + "\t".join(samples) + "\n")
        for pos, ref, alt, filt, gts in rows:
            fh.write(f"chrT\t{pos}\t.\t{ref}\t{alt}\t.\t{filt}\t.\tGT\t" + "\t".join(gts) + "\n")
    pysam.tabix_compress(str(txt), str(path), force=True)
    pysam.tabix_index(str(path), preset="vcf", force=True)
    return path


@pytest.fixture()
def vcf_cohort(tmp_path):
    (tmp_path / "ref.fa").write_text(">chrT\n" + REF + "\n")
    samples = ["s1", "s2", "s3", "s4"]
    rows = [  # pos (1-based), ref, alt, filter, GT per sample s1..s4
        (5, "A", "G", "PASS", ["0|1", "1|1", "0|0", "0/1"]),          # SNV; s4 unphased het
        (12, "CGG", "C", "PASS", ["1|0", "0|0", "0|1", "0|0"]),       # deletion of GG (offset 11)
        (13, "G", "T", "PASS", ["1|0", "0|0", "0|0", "0|0"]),         # overlaps the deletion on s1 hap1
        (20, "T", "TAAA", "PASS", ["0|0", "0|1", "./.", "0|0"]),     # insertion; s3 missing genotype
        (30, "A", "C", "PASS", ["1|1", "0|0", "0|0", "0|0"]),         # REF mismatch (reference has G)
        (40, "A", "<DEL>", "PASS", ["0|1", "0|0", "0|0", "0|0"]),     # symbolic
        (88, REF[87:94], REF[87], "PASS", ["0|0", "1|0", "0|0", "0|0"]),  # runs past the region end (90)
    ]
    vcf = _write_vcf(tmp_path / "c.vcf.gz", samples, rows)
    sheet = pd.DataFrame({"sample": ["s1", "s2", "s3", "s4", "s5", "s6"],
                          "condition": ["case", "control", "case", "control", "case", "control"],
                          "batch": ["A", "B", "A", "B", "A", "A"],
                          "extra": ["x.txt", "x.txt", "x.txt", "x.txt", "x.txt", "gone.txt"]})
    (tmp_path / "x.txt").write_text("x")
    sheet.to_csv(tmp_path / "samples.tsv", sep="\t", index=False)
    return tmp_path, vcf


def test_vcf_haplotypes_indels_statuses_and_exclusions(vcf_cohort):
    d, vcf = vcf_cohort
    sheet = read_sample_sheet(d / "samples.tsv", "condition", covariates=["batch"], path_columns=["extra"])
    assert sheet.loc["s6", "status"] == "missing_file" and "gone.txt" in sheet.loc["s6", "status_detail"]
    ss = vcf_sequences(vcf, d / "ref.fa", read_regions(["chrT:1-90"]), sheet)
    st = ss.samples["status"]
    assert st["s5"] == "not_in_vcf" and st["s6"] == "missing_file" and (st[["s1", "s2", "s3", "s4"]] == "ok").all()
    seqs = ss.sequences.set_index(["sample", "track"])["seq_id"].map(ss.unique)
    ref = REF[:90]
    # s1 hap1: deletion applied (the overlapping SNV at 13 is not), ref mismatch and <DEL> not applied
    s1h1 = ref[:11] + "C" + ref[14:]
    assert seqs["s1", "hap1"] == s1h1 and len(s1h1) == 88
    s1h2 = ref[:4] + "G" + ref[5:]
    assert seqs["s1", "hap2"] == s1h2
    # s2: SNV on both haplotypes, insertion on hap2; the deletion crossing the region end is not applied
    assert seqs["s2", "hap1"] == ref[:4] + "G" + ref[5:]
    assert seqs["s2", "hap2"] == ref[:4] + "G" + ref[5:19] + "TAAA" + ref[20:]
    # s3: missing genotype keeps the reference; deletion on hap2
    assert seqs["s3", "hap1"] == ref and seqs["s3", "hap2"] == ref[:11] + "C" + ref[14:]
    # s4: unphased het -> the alt allele on both sequences (consensus), counted
    assert seqs["s4", "hap1"] == seqs["s4", "hap2"] == ref[:4] + "G" + ref[5:]
    rec = ss.records.set_index(["sample", "record", "track"])["status"]
    assert rec["s1", "chrT:13:G:T", "hap1"] == "overlap"
    assert rec["s1", "chrT:30:A:C", "hap1"] == rec["s1", "chrT:30:A:C", "hap2"] == "ref_mismatch"
    assert rec["s1", "chrT:40:A:<DEL>", "hap2"] == "symbolic_allele"
    assert rec["s2", f"chrT:88:{REF[87:94]}:{REF[87]}", "hap1"] == "crosses_region"
    assert rec["s3", "chrT:20:T:TAAA", "both"] == "missing_genotype"
    assert rec["s4", "chrT:5:A:G", "hap1"] == "applied_unphased"
    c = ss.report["counts"]
    assert c["record_status"]["applied_unphased"] == 2 and c["record_status"]["overlap"] == 1
    assert c["sample_status"] == {"ok": 4, "not_in_vcf": 1, "missing_file": 1}
    # identical sequences are stored once (s1 hap2, s2 hap1, s4 x2 share one)
    assert len(ss.unique) < len(ss.sequences)
    with pytest.raises(CohortError, match="unphased heterozygous genotype at chrT:5:A:G"):
        vcf_sequences(vcf, d / "ref.fa", read_regions(["chrT:1-90"]), sheet, unphased="error")
    ss.save(d / "set")
    back = SequenceSet.load(d / "set")
    assert back.unique == ss.unique and len(back.records) == len(ss.records)
    assert back.samples.loc["s5", "status"] == "not_in_vcf"


def test_bad_inputs_end_to_end_are_counted_in_the_report(tmp_path, tiny_model):
    """Sheet rows with a missing file, samples absent from the VCF, a row without a label, unphased genotypes and
    overlapping records run through sequences -> embed -> biomarkers -> report: every exclusion is counted with its
    reason, candidates.tsv carries BH q-values; a cohort left with a single class after the VCF match is an error."""
    from biointerp.models import save_model

    (tmp_path / "ref.fa").write_text(">chrT\n" + REF + "\n")
    vcf_samples = [f"s{i}" for i in range(1, 11)]  # s1-s5 cases, s6-s10 controls
    case_gt = ["1|0", "0|1", "1|1", "1|0", "0/1"]   # s5 unphased
    rows = [(5, "A", "G", "PASS", case_gt + ["0|0"] * 5),
            (12, "CGG", "C", "PASS", ["1|0"] + ["0|0"] * 5 + ["1|0"] + ["0|0"] * 3),
            (13, "G", "T", "PASS", ["1|0"] + ["0|0"] * 9),                        # overlaps the deletion on s1
            (30, "A", "C", "PASS", ["0|1"] + ["0|0"] * 9)]                        # REF mismatch
    vcf = _write_vcf(tmp_path / "c.vcf.gz", vcf_samples, rows)
    (tmp_path / "x.txt").write_text("x")
    sheet = pd.DataFrame({"sample": vcf_samples + ["s11", "s12", "s13"],
                          "condition": ["case"] * 5 + ["control"] * 5 + ["case", "control", None],
                          "extra": ["x.txt"] * 11 + ["gone.txt", "x.txt"]})
    sheet.to_csv(tmp_path / "samples.tsv", sep="\t", index=False)
    save_model(tiny_model, tmp_path / "model")
    run = CliRunner().invoke
    r = run(main, ["cohort", "sequences", "--samples", str(tmp_path / "samples.tsv"), "--vcf", str(vcf),
                   "--fasta", str(tmp_path / "ref.fa"), "--regions", "chrT:1-90", "--path-column", "extra",
                   "--out", str(tmp_path / "seqs")])
    assert r.exit_code == 0, r.output
    assert "10 of 13 samples usable" in r.output
    r = run(main, ["cohort", "embed", "--sequences", str(tmp_path / "seqs"), "--model", str(tmp_path / "model"),
                   "--layer", "blocks.2", "--out", str(tmp_path / "f.h5ad")])
    assert r.exit_code == 0, r.output
    r = run(main, ["cohort", "biomarkers", "--features", str(tmp_path / "f.h5ad"), "--no-probe",
                   "--out-dir", str(tmp_path / "cand")])
    assert r.exit_code == 0, r.output
    cand = pd.read_csv(tmp_path / "cand" / "candidates.tsv", sep="\t", index_col=0)
    tested = cand.dropna(subset=["pval"])
    assert len(tested) == 16 and (tested["qval"] >= tested["pval"] - 1e-15).all() and (tested["qval"] <= 1).all()
    by_p = tested.sort_values("pval")
    assert (np.diff(by_p["qval"].to_numpy()) >= -1e-12).all()  # BH q is monotone in p
    r = run(main, ["cohort", "report", "--features", str(tmp_path / "f.h5ad"), "--candidates", str(tmp_path / "cand"),
                   "--sequences", str(tmp_path / "seqs"), "--out", str(tmp_path / "report.md")])
    assert r.exit_code == 0, r.output
    rep = (tmp_path / "report.md").read_text()
    assert "13 samples in the table; 10 usable (5 cases" in rep
    for status, detail in (("not_in_vcf", "no column in c.vcf.gz"), ("missing_file", "gone.txt"),
                           ("no_label", "condition missing")):
        line = next(ln for ln in rep.splitlines() if ln.startswith(f"| {status} |") and detail in ln)
        assert line.rstrip().endswith("| 1 |"), line
    for status, n in (("applied_unphased", 2), ("overlap", 1), ("ref_mismatch", 1)):
        assert f"| {status} | {n} |" in rep, (status, rep)
    assert "q-values: Benjamini-Hochberg" in rep
    # a single class left after matching the sheet against the VCF: a clear error, no output
    sheet.assign(sample=[f"s{i}" for i in range(1, 6)] + [f"x{i}" for i in range(6, 11)] + ["s11", "s12", "s13"]
                 ).to_csv(tmp_path / "one.tsv", sep="\t", index=False)
    r = run(main, ["cohort", "sequences", "--samples", str(tmp_path / "one.tsv"), "--vcf", str(vcf),
                   "--fasta", str(tmp_path / "ref.fa"), "--regions", "chrT:1-90", "--out", str(tmp_path / "one")])
    assert r.exit_code == 1 and "Error: after matching the sheet against c.vcf.gz: 5 usable cases and 0 usable " \
        "controls" in r.output, r.output
    assert not (tmp_path / "one").exists()


def test_sheet_errors(tmp_path):
    pd.DataFrame({"sample": ["a", "a", "b"], "condition": ["case", "control", "case"]}).to_csv(
        tmp_path / "dup.tsv", sep="\t", index=False)
    with pytest.raises(CohortError, match="duplicated sample ids.*'a'"):
        read_sample_sheet(tmp_path / "dup.tsv")
    pd.DataFrame({"sample": ["a", "b"], "condition": ["case", "case"]}).to_csv(tmp_path / "one.tsv", sep="\t",
                                                                                index=False)
    with pytest.raises(CohortError, match="cannot tell cases from controls"):
        read_sample_sheet(tmp_path / "one.tsv")
    with pytest.raises(CohortError, match="covariate column 'age' not in"):
        read_sample_sheet(tmp_path / "one.tsv", covariates=["age"])
    with pytest.raises(CohortError, match="chrom:start-end"):
        read_regions(["chr1:5"])


def test_methylation_encodings_and_bedmethyl(tmp_path):
    (tmp_path / "ref.fa").write_text(">chrT\n" + REF + "\n")
    cpg = [i for i in range(99) if REF[i:i + 2] == "CG"]  # 0-based C of each CpG
    assert len(cpg) >= 10
    # s1 methylated everywhere, s2 unmethylated, s3: one missing call and one call off-CpG
    rows = {f"chrT:{o + 1}": [0.9, 0.1, 0.8] for o in cpg}
    rows[f"chrT:{cpg[0] + 1}"] = [0.9, 0.1, np.nan]
    rows["chrT:1"] = [0.5, 0.5, 0.5]  # 'A', not a CpG
    beta = pd.DataFrame(rows, index=["s1", "s2", "s3"]).T
    beta.index.name = "cpg"
    beta.to_csv(tmp_path / "beta.tsv", sep="\t")
    pd.DataFrame({"sample": ["s1", "s2", "s3", "s4"], "condition": ["case", "control", "case", "control"]}).to_csv(
        tmp_path / "s.tsv", sep="\t", index=False)
    sheet = read_sample_sheet(tmp_path / "s.tsv")
    ss = methylation_sequences(tmp_path / "ref.fa", read_regions(["chrT:1-100"]), sheet,
                               beta=read_beta_matrix(tmp_path / "beta.tsv"))
    seq = ss.sequences.set_index(["sample", "encoding"])["seq_id"].map(ss.unique)
    ext1 = list(REF)
    for o in cpg:
        ext1[o] = "M"
    assert seq["s1", "extended"] == "".join(ext1) and seq["s2", "extended"] == REF
    bis2 = REF.replace("C", "T")  # every unmethylated C read as T
    assert seq["s2", "bisulfite"] == bis2
    bis1 = [("T" if (b == "C" and i not in cpg) else b) for i, b in enumerate(REF)]
    assert seq["s1", "bisulfite"] == "".join(bis1)
    # s3's missing CpG takes the cohort mean (0.5 -> methylated at threshold 0.5), counted
    r3 = ss.sequences.set_index(["sample", "encoding"]).loc[("s3", "extended")]
    assert r3["n_imputed"] == 1 and r3["n_called"] == len(cpg) - 1 and seq["s3", "extended"][cpg[0]] == "M"
    assert ss.samples.loc["s4", "status"] == "not_in_matrix"
    assert ss.report["counts"]["calls_not_cpg"] == 3 and ss.report["counts"]["calls_imputed"] == 1
    only_cpg = methylation_sequences(tmp_path / "ref.fa", read_regions(["chrT:1-100"]), sheet,
                                     beta=read_beta_matrix(tmp_path / "beta.tsv"), encodings=["bisulfite"],
                                     bisulfite_cpg_only=True)
    s = only_cpg.sequences.set_index("sample")["seq_id"].map(only_cpg.unique)
    assert s["s1"] == REF
    # bedMethyl (modkit-style): + strand C and - strand G of one CpG merged by coverage; low coverage dropped
    o = cpg[1]
    bm = tmp_path / "s1.bed"
    bm.write_text(f"chrT\t{o}\t{o + 1}\tm\t10\t+\t{o}\t{o + 1}\t255,0,0\t10 100.0 10 0 0 0 0 0 0\n"
                  f"chrT\t{o + 1}\t{o + 2}\tm\t30\t-\t{o + 1}\t{o + 2}\t255,0,0\t30 0.0 0 30 0 0 0 0 0\n"
                  f"chrT\t{o}\t{o + 1}\th\t10\t+\t{o}\t{o + 1}\t255,0,0\t10 50.0 5 5 0 0 0 0 0\n"
                  f"chrT\t{cpg[2]}\t{cpg[2] + 1}\tm\t2\t+\t0\t0\t0\t2\t100.0\t2\t0\n")
    b, counts = read_bedmethyl(bm, min_coverage=5)
    assert list(b.index) == [("chrT", o + 1)] and b.iloc[0] == pytest.approx(10 / 40)
    assert counts["low_coverage"] == 1
    # per-sample bedMethyl paths in the sample sheet (relative to the sheet); a missing file is counted
    (tmp_path / "s2.bed").write_text(f"chrT\t{o}\t{o + 1}\tm\t10\t+\t0\t0\t0\t20\t90.0\n")
    pd.DataFrame({"sample": ["s1", "s2", "s3"], "condition": ["case", "control", "control"],
                  "bedmethyl": ["s1.bed", "s2.bed", "nope.bed"]}).to_csv(tmp_path / "bm.tsv", sep="\t", index=False)
    sh = read_sample_sheet(tmp_path / "bm.tsv", path_columns=["bedmethyl"])
    bs = methylation_sequences(tmp_path / "ref.fa", read_regions(["chrT:1-100"]), sh, bedmethyl_column="bedmethyl",
                               encodings=["extended"], missing="reference")
    e = bs.sequences.set_index("sample")["seq_id"].map(bs.unique)
    assert e["s1"] == REF and e["s2"][o] == "M" and e["s2"].count("M") == 1
    assert bs.samples.loc["s3", "status"] == "missing_file" and bs.report["counts"]["calls_low_coverage"] == 1


def test_embeddings_shared_equal_unshared(vcf_cohort, tiny_model):
    from biointerp.cohort_embed import sample_features

    d, vcf = vcf_cohort
    sheet = read_sample_sheet(d / "samples.tsv", "condition", covariates=["batch"])
    ss = vcf_sequences(vcf, d / "ref.fa", read_regions(["chrT:1-90", "chrT:41-100"]), sheet)
    a = sample_features(tiny_model, ss, ["blocks.1", "blocks.3"], ["mean", "max"], batch_size=3)
    b = sample_features(tiny_model, ss, ["blocks.1", "blocks.3"], ["mean", "max"], share=False, batch_size=5)
    e = a.uns["biointerp"]["embedding"]
    assert e["forward_sequences"] == len(set(ss.sequences["seq_id"])) < e["sequences"] == 4 * 2 * 2
    assert b.uns["biointerp"]["embedding"]["forward_sequences"] == 16
    ok = (a.obs["status"] == "ok").to_numpy()
    np.testing.assert_allclose(a.X[ok], b.X[ok], rtol=1e-4, atol=1e-5)
    assert np.isnan(a.X[~ok]).all() and list(a.obs_names) == ["s1", "s2", "s3", "s4", "s5", "s6"]
    assert a.n_vars == 2 * 2 * 2 * 16  # regions x layers x poolings x d
    v = a.var.iloc[0]
    assert (v["model"], v["region"], v["layer"], v["pooling"], v["dim"], v["chrom"], v["start"]) == \
        ("tiny", "chrT:1-90", "blocks.1", "mean", 0, "chrT", 1)
    # haplotype mean: s4 (both haplotypes identical) equals one direct embedding of that sequence
    from biointerp.cohort_embed import embed_sequences

    s4 = ss.sequences[(ss.sequences["sample"] == "s4") & (ss.sequences["region"] == "chrT:1-90")]["seq_id"].iloc[0]
    direct = embed_sequences(tiny_model, [ss.unique[s4]], ["blocks.1"])[("blocks.1", "mean")][0]
    np.testing.assert_allclose(a["s4", a.var_names[:16]].X[0], direct, rtol=1e-5, atol=1e-6)
    m = sample_features(tiny_model, ss, ["blocks.1"], region_pool="mean")
    assert m.n_vars == 16 and (m.var["region"] == "all").all()
    # SAE latents of a layer (biointerp.features), pooled like activations; shared == unshared
    from biointerp.features import SparseAutoencoder

    sae = ("blocks.3", SparseAutoencoder(16, 24, 4, kind="batch_topk", seed=0))
    s1 = sample_features(tiny_model, ss, ["blocks.1"], sae=sae, batch_size=3)
    s2 = sample_features(tiny_model, ss, ["blocks.1"], sae=sae, share=False, batch_size=5)
    lat = s1.var["layer"] == "blocks.3:sae"
    assert lat.sum() == 2 * 24 and (s1.var["layer"] == "blocks.1").sum() == 2 * 16
    np.testing.assert_allclose(s1.X[ok], s2.X[ok], rtol=1e-4, atol=1e-5)
    assert (s1.X[ok][:, lat.to_numpy()] >= 0).all()


def _planted_table(n=80, d=8, seed=0, confound=True):
    import anndata as ad

    rng = np.random.default_rng(seed)
    y = rng.permutation(np.r_[np.ones(n // 4), np.zeros(n - n // 4)])  # imbalanced 1:3
    batch = np.where(rng.random(n) < np.where(y == 1, 0.8, 0.2), "B", "A")
    X = rng.normal(size=(n, d))
    X[:, 0] += 1.5 * y  # real signal
    if confound:
        X[:, 1] += 2.5 * (batch == "B")  # batch-only feature
    X[rng.random(X.shape) < 0.02] = np.nan
    obs = pd.DataFrame({"label": y, "status": "ok", "batch": batch, "age": rng.normal(60, 5, n)},
                       index=[f"s{i}" for i in range(n)])
    var = pd.DataFrame({"status": "ok"}, index=[f"f{j}" for j in range(d)])
    return ad.AnnData(X=X.astype(np.float32), obs=obs, var=var, uns={"biointerp": {}})


def test_cv_probe_permutation_covariates_and_artifact(tmp_path):
    from biointerp.cohort_probe import adjust_covariates, apply_cohort_probe, cv_probe, save_cohort_probe

    a = _planted_table()
    r = cv_probe(a, k=5, n_perm=10, n_boot=200)
    m = r["metrics"]
    assert m["auroc"] > 0.8 and m["perm_p"] == pytest.approx(1 / 11) and abs(m["perm_auroc_mean"] - 0.5) < 0.15
    assert m["auroc_ci"][0] < m["auroc"] < m["auroc_ci"][1] and len(m["fold_auroc"]) == 5
    assert set(a.obs["cv_fold"]) == set(range(5)) and np.isfinite(a.obs["cv_score"]).all()
    # labels carried only by the confounder: the batch-only table predicts labels until batch is regressed out
    b = _planted_table(seed=1)
    b.X[:, 0] = np.random.default_rng(5).normal(size=b.n_obs)
    raw = cv_probe(b, k=5, n_perm=0, n_boot=0)["metrics"]["auroc"]
    adj = cv_probe(b, k=5, covariates=["batch"], covariate_mode="regress", n_perm=0, n_boot=0)["metrics"]
    assert raw > 0.6 and adj["auroc"] < raw - 0.1 and adj["covariates_only_auroc"] > 0.65
    ranked = rank_features(adjust_covariates(b, ["batch"]))
    assert ranked.var.loc["f1", "rank"] > 3 and rank_features(b).var.loc["f1", "rank"] == 1
    # the saved probe (safetensors + card) reproduces the final fit, covariates included
    r2 = cv_probe(a, k=3, covariates=["batch", "age"], covariate_mode="regress", n_perm=0, n_boot=0)
    p = save_cohort_probe(tmp_path / "p.safetensors", r2, a)
    from biointerp.cohort_probe import _predict, covariate_design

    C, _ = covariate_design(a.obs, ["batch", "age"], r2["covariate_spec"])
    want = _predict(r2["fit"], np.asarray(a.X, float), C)
    np.testing.assert_allclose(apply_cohort_probe(p, a).to_numpy(), want, rtol=1e-4, atol=1e-4)
    with pytest.raises(CohortError, match="needs --covariate"):
        cv_probe(a, covariate_mode="regress")
    few = a.copy()
    few.obs["label"] = [1.0] * 3 + [0.0] * (a.n_obs - 3)
    with pytest.raises(CohortError, match="at least 5 usable cases and 5 controls; have 3 cases"):
        cv_probe(few, k=5)


def test_learning_curve_fine_tuning_beats_scratch_when_source_is_close():
    from biointerp.cohort_probe import learning_curve

    rng = np.random.default_rng(0)
    d = 30
    w_src = rng.normal(size=d)
    w_new = w_src + 0.3 * rng.normal(size=d)  # a related task
    X = rng.normal(size=(400, d))
    y = (X @ w_new + 0.5 * rng.normal(size=400) > 0).astype(int)
    src = {"w": w_src, "b": 0.0, "mean": np.zeros(d), "std": np.ones(d)}
    runs, s = learning_curve(src, X, y, sizes=(20, 100, "all"), repeats=2, l2=0.05)
    t = s.pivot(index="n", columns="method", values="auroc_mean")
    assert list(t.index) == [20, 100, 200]
    assert t.loc[20, "fine_tuned"] > t.loc[20, "scratch"] + 0.05
    assert t.loc[200, "fine_tuned"] >= t.loc[20, "fine_tuned"] - 0.01
    assert np.ptp(t["frozen"]) < 1e-9 and 0.8 < t["frozen"].iloc[0] < t.loc[200, "fine_tuned"] + 0.02
    assert (runs.groupby(["n", "method"]).size().loc[20] == 2).all()


def _variant_cohort(tmp_path, name, n, seed, shift=0.0):
    """A pooled variant store (emb.blocks.2.mean + .ref) and its labels: deletions mostly pathogenic
    (what the variant-class baseline sees), SNV labels carried by the alt - ref embedding's dim 0."""
    import torch

    from biointerp.store import ActivationStore

    rng = np.random.default_rng(seed)
    dm = 8
    snv = rng.uniform(size=n) < 0.6
    ref = rng.normal(size=(n, dm))
    y = np.where(snv, rng.uniform(size=n) < 0.4, rng.uniform(size=n) < 0.95).astype(int)
    alt = ref + 0.3 * rng.normal(size=(n, dm))
    alt[:, 0] += np.where(snv, 0.8 * (2 * y - 1) + shift, 0.0)
    alt[:, 1] += np.where(snv, 0.0, 1.0)  # indels look different
    ids = [f"chr9:{1000 + 10 * i}:{'C:T' if s else 'CA:C'}" for i, s in enumerate(snv)]
    st = ActivationStore.create(tmp_path / f"{name}.store", {"model": "synthetic", "layers": ["blocks.2"],
                                                             "view": "mean"})
    st.write_shard(ids, {"emb.blocks.2.mean": torch.tensor(alt, dtype=torch.float32),
                         "emb.blocks.2.mean.ref": torch.tensor(ref, dtype=torch.float32)})
    lab = pd.DataFrame({"variant_id": ids, "label": np.where(y == 1, "pathogenic", "benign"),
                        "split": np.where(rng.uniform(size=n) < 0.8, "train", "val")})
    lab.to_parquet(tmp_path / f"{name}.parquet", index=False)
    return ids, y, snv


def test_cli_extend_variant_probe_with_baselines_and_snv_stratum(tmp_path):
    """`cohort extend --store`: every arm beside the model-free baselines fitted on the same training rows,
    overall and within SNVs, with intervals; frozen baselines fitted on the source cohort."""
    run = CliRunner().invoke
    _variant_cohort(tmp_path, "src", 240, 0)
    ids, y, snv = _variant_cohort(tmp_path, "new", 300, 1, shift=0.2)
    r = run(main, ["probe", "train", "--kind", "linear", "--store", str(tmp_path / "src.store"), "--labels",
                   str(tmp_path / "src.parquet"), "--split-column", "split", "--tensor", "emb.blocks.2.mean",
                   "--n-boot", "20", "--out", str(tmp_path / "src.safetensors")])
    assert r.exit_code == 0, r.output
    r = run(main, ["cohort", "extend", "--probe", str(tmp_path / "src.safetensors"), "--store",
                   str(tmp_path / "new.store"), "--labels", str(tmp_path / "new.parquet"), "--source-labels",
                   str(tmp_path / "src.parquet"), "--sizes", "20,50,all", "--repeats", "3", "--n-boot", "50",
                   "--out-dir", str(tmp_path / "ext")])
    assert r.exit_code == 0, r.output
    assert "-- all (held-out n=150)" in r.output and "-- snv (held-out n=" in r.output
    s = pd.read_csv(tmp_path / "ext" / "learning_curve.tsv", sep="\t")
    assert {"frozen", "fine_tuned", "scratch", "baseline:variant_class", "baseline:substitution",
            "baseline:combined", "frozen_baseline:combined"} <= set(s["method"])
    assert (s["auroc_lo"] <= s["auroc_mean"] + 1e-9).all() and (s["auroc_mean"] <= s["auroc_hi"] + 1e-9).all()
    t = s.set_index(["n", "method", "stratum"])["auroc_mean"]
    # the indel flag ranks deletions above SNVs overall and says nothing within SNVs
    assert t[150, "baseline:variant_class", "all"] > 0.7 and t[150, "baseline:variant_class", "snv"] == 0.5
    # the probes see the SNV signal; with all 150 training rows the scratch probe finds it within SNVs
    assert t[150, "scratch", "snv"] > 0.75 and t[150, "frozen", "snv"] > 0.75
    runs = pd.read_csv(tmp_path / "ext" / "learning_curve_runs.tsv", sep="\t")
    assert runs[(runs["n"] == 20) & (runs["method"] == "scratch") & (runs["stratum"] == "all")]["repeat"].nunique() == 3
    r = run(main, ["cohort", "extend", "--probe", str(tmp_path / "src.safetensors"), "--store",
                   str(tmp_path / "new.store"), "--labels", str(tmp_path / "new.parquet"), "--label-column", "nope",
                   "--out-dir", str(tmp_path / "x")])
    assert r.exit_code == 1 and "label column 'nope'" in r.output


def test_cli_vcf_cohort_end_to_end(tmp_path, tiny_model):
    from biointerp.models import save_model

    save_model(tiny_model, tmp_path / "model")
    run = CliRunner().invoke
    r = run(main, ["cohort", "simulate", "--kind", "vcf", "--out", str(tmp_path / "sim"), "--cases", "10",
                   "--controls", "10", "--regions", "4", "--causal", "1", "--confounded", "1", "--region-len", "200",
                   "--preset", "tiny", "--genome-seed", "7", "--unphased-frac", "0.1"])
    assert r.exit_code == 0, r.output
    sim = tmp_path / "sim"
    r = run(main, ["cohort", "sequences", "--samples", str(sim / "samples.tsv"), "--vcf", str(sim / "cohort.vcf.gz"),
                   "--fasta", str(sim / "genome.fa"), "--regions", str(sim / "regions.bed"), "--covariate", "batch",
                   "--out", str(tmp_path / "seqs")])
    assert r.exit_code == 0, r.output
    assert "20 of 20 samples usable; 4 regions; 160 sequences" in r.output and "applied_unphased" in r.output
    r = run(main, ["cohort", "embed", "--sequences", str(tmp_path / "seqs"), "--model", str(tmp_path / "model"),
                   "--layer", "blocks.2", "--out", str(tmp_path / "f.h5ad")])
    assert r.exit_code == 0, r.output
    assert "20 of 20 samples embedded (10 cases / 10 controls), 64 features" in r.output
    r = run(main, ["cohort", "probe", "--features", str(tmp_path / "f.h5ad"), "--folds", "3", "--covariate", "batch",
                   "--covariate-mode", "regress", "--n-perm", "10", "--n-boot", "50",
                   "--out", str(tmp_path / "p.safetensors"), "--json"])
    assert r.exit_code == 0, r.output
    m = json.loads(r.output[r.output.index("{"):])
    assert m["n_samples"] == 20 and m["n_perm"] == 10 and 0 < m["perm_p"] <= 1
    r = run(main, ["cohort", "biomarkers", "--features", str(tmp_path / "f.h5ad"), "--no-probe", "--top", "5",
                   "--out-dir", str(tmp_path / "cand")])
    assert r.exit_code == 0, r.output
    for f in ("candidates.h5ad", "candidates.tsv", "regions.tsv", "volcano.png", "heatmap.png", "distributions.png"):
        assert (tmp_path / "cand" / f).stat().st_size > 100, f
    reg = pd.read_csv(tmp_path / "cand" / "regions.tsv", sep="\t")
    assert len(reg) == 4 and sorted(reg["region_rank"]) == [1, 2, 3, 4]
    r = run(main, ["cohort", "extend", "--probe", str(tmp_path / "p.safetensors"), "--features",
                   str(tmp_path / "f.h5ad"), "--sizes", "6,all", "--repeats", "2", "--out-dir", str(tmp_path / "ext")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "ext" / "learning_curve.png").exists() and "fine_tuned" in r.output
    # bad input: one line, no traceback
    r = run(main, ["cohort", "sequences", "--samples", str(sim / "samples.tsv"), "--vcf", str(sim / "nope.vcf.gz"),
                   "--fasta", str(sim / "genome.fa"), "--regions", str(sim / "regions.bed"), "--out", str(tmp_path / "x")])
    assert r.exit_code != 0 and "Error: VCF" in r.output and "not found" in r.output
    r = run(main, ["cohort", "sequences", "--samples", str(sim / "samples.tsv"), "--fasta", str(sim / "genome.fa"),
                   "--regions", str(sim / "regions.bed"), "--out", str(tmp_path / "x")])
    assert r.exit_code != 0 and "exactly one of --vcf, --beta" in r.output
