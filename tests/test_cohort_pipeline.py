"""The cohort_biomarkers Snakemake workflow: lint, schema, and a real run of the VCF path (tiny model)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import anndata as ad
import pandas as pd
import yaml

from biointerp import pipeline as bp

REPO = Path(__file__).resolve().parents[1]


def _snakemake(*args: str) -> subprocess.CompletedProcess:
    from test_pipelines import snakemake  # Snakemake's command line, in this process

    return snakemake(*args, cwd=REPO)


def test_lint_and_schema(tmp_path):
    r = _snakemake("-s", "pipelines/cohort_biomarkers/Snakefile", "--configfile",
                   "pipelines/cohort_biomarkers/config.yaml", "--lint")
    text = r.stdout + r.stderr
    assert r.returncode == 0 and "Lints for" not in text, text
    bad = yaml.safe_load(bp.default_config("cohort_biomarkers").read_text())
    bad["probe"]["covariate_mode"] = "sometimes"
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    r = _snakemake("-s", "pipelines/cohort_biomarkers/Snakefile", "--configfile", str(tmp_path / "bad.yaml"), "-n")
    assert r.returncode != 0 and "covariate_mode" in r.stdout + r.stderr
    tcga = _snakemake("-s", "pipelines/cohort_biomarkers/Snakefile", "--configfile",
                      "pipelines/cohort_biomarkers/config.tcga_coad.yaml", "-n", "--config", f"outdir={tmp_path}/t")
    assert tcga.returncode == 0 and "load_matrix" in tcga.stdout and "embed_samples" not in tcga.stdout


def test_vcf_cohort_run_and_resume(tmp_path):
    from biointerp.models import random_model, save_model, tiny_config

    save_model(random_model(tiny_config(hidden_size=16, num_layers=8, num_attention_heads=2), seed=3),
               tmp_path / "model")
    cfg = yaml.safe_load(bp.default_config("cohort_biomarkers").read_text())
    cfg.update(outdir=str(tmp_path / "out"), model=str(tmp_path / "model"))
    cfg["simulate"].update(cases=10, controls=10, regions=3, causal=1, confounded=1, preset="tiny")
    cfg["embed"]["layers"] = ["blocks.2"]
    cfg["probe"].update(folds=3, n_perm=5, n_boot=50)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    assert bp.run("cohort_biomarkers", tmp_path / "c.yaml", cores=2, quiet=True)
    out = tmp_path / "out"
    f = ad.read_h5ad(out / "features.h5ad")
    assert f.shape == (20, 3 * 16) and set(f.var["layer"]) == {"blocks.2"}
    m = json.loads((out / "probe" / "metrics.json").read_text())
    assert m["n_samples"] == 20 and m["covariates"] == ["batch"] and m["covariate_mode"] == "regress"
    reg = pd.read_csv(out / "candidates" / "regions.tsv", sep="\t")
    assert len(reg) == 3
    report = (out / "report.md").read_text()
    assert "20 usable (10 cases" in report and "Candidate regions" in report and "label permutations: 5" in report
    assert "Covariates regressed out before ranking: ['batch']" in report
    # resume: nothing left to do; a removed output is rebuilt alone
    before = (out / "features.h5ad").stat().st_mtime_ns
    (out / "report.md").unlink()
    assert bp.run("cohort_biomarkers", tmp_path / "c.yaml", cores=2, quiet=True)
    assert (out / "report.md").exists() and (out / "features.h5ad").stat().st_mtime_ns == before
