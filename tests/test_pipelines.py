"""The Snakemake workflows: lint, slurm dry run with GPU resources, end-to-end
runs (synthetic genome and real BRCA1 + ClinVar 2016 data) with the demo model,
shard invariance and incremental reruns."""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from biointerp import pipeline as bp

REPO = Path(__file__).resolve().parents[1]
#: Model used by the end-to-end runs (the bundled demo model; override only to debug).
MODEL = os.environ.get("BIOINTERP_TEST_MODEL", "demo")
PIPES = ["variant_scoring", "probe_training"]
#: Small windows keep the model work to seconds on 2 cores.
SMALL = {"score": {"window": 128}, "resources": {"model": {"gpu": 0, "threads": 1, "mem_mb": 2000},
                                                  "train": {"gpu": 0, "threads": 1, "mem_mb": 2000}}}


def snakemake_process(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    """Plain Snakemake command line in a new process (the same interpreter as the tests)."""
    return subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def snakemake(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    """Plain Snakemake command line run in this process: the same argument parsing, profile
    handling and API calls as `python -m snakemake` (snakemake.cli.main), output captured.
    Saves the seconds of a new interpreter importing Snakemake for each plan and lint."""
    import contextlib
    import io

    from snakemake.cli import args_to_api, parse_args

    buf, here = io.StringIO(), os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            try:
                parser, parsed = parse_args(list(args))
                ok = args_to_api(parsed, parser)
            except SystemExit as end:
                ok = end.code in (0, None)
    finally:
        os.chdir(here)
    return subprocess.CompletedProcess(["snakemake", *args], 0 if ok else 1, buf.getvalue(), "")


def write_config(path: Path, base: dict, **over) -> Path:
    cfg = json.loads(json.dumps(base))
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(cfg.get(k), dict):
            cfg[k].update(v)
        else:
            cfg[k] = v
    path.write_text(yaml.safe_dump(cfg))
    return path


def planned_jobs(text: str) -> dict[str, int]:
    """Job counts from the 'Job stats' table of a Snakemake dry run."""
    m = re.search(r"Job stats:\n.*?\n-+\s+-+\n(.*?)\ntotal", text, re.S)
    if not m:
        return {}
    return {ln.split()[0]: int(ln.split()[1]) for ln in m.group(1).strip().splitlines()}


def planned_resources(text: str) -> list[tuple[str, dict]]:
    """(rule, resources) of every job printed by a dry run."""
    out = []
    for block in re.split(r"\n(?=\[.*?\]\n(?:local)?rule )", text):
        rm = re.search(r"^(?:local)?rule (\w+):", block, re.M)
        res = re.search(r"^\s+resources: (.*)$", block, re.M)
        if rm:
            items = dict(kv.split("=", 1) for kv in res.group(1).split(", ")) if res else {}
            out.append((rm.group(1), items))
    return out


# ----------------------------------------------------------------------------- lint and plans
@pytest.mark.parametrize("name", PIPES)
def test_lint_clean(name):
    r = snakemake("-s", f"pipelines/{name}/Snakefile", "--configfile", f"pipelines/{name}/config.yaml", "--lint")
    assert r.returncode == 0, r.stderr + r.stdout
    text = r.stdout + r.stderr
    assert "Congratulations, your workflow is in a good condition!" in text
    assert "Lints for" not in text


def test_schema_rejects_bad_config(tmp_path):
    cfg = write_config(tmp_path / "bad.yaml", yaml.safe_load(bp.default_config("variant_scoring").read_text()),
                       n_shards=0)
    r = snakemake("-s", "pipelines/variant_scoring/Snakefile", "--configfile", str(cfg), "-n")
    assert r.returncode != 0
    assert "n_shards" in r.stdout + r.stderr


@pytest.mark.parametrize("name,model_rules", [
    ("variant_scoring", {"score_shard"}),
    ("probe_training", {"score_shard", "harvest_shard", "train_probe"}),
])
def test_slurm_dry_run_plans_gpu_jobs(name, model_rules, tmp_path):
    base = yaml.safe_load(bp.default_config(name).read_text())
    cfg = write_config(tmp_path / "c.yaml", base, n_shards=3, outdir=str(tmp_path / "out"))
    r = snakemake("-s", f"pipelines/{name}/Snakefile", "--configfile", str(cfg),
                  "--profile", "snakemake/profiles/slurm", "--dry-run")
    text = r.stdout + r.stderr
    assert r.returncode == 0, text
    assert "Using profile snakemake/profiles/slurm" in text
    jobs = planned_jobs(text)
    for rule in model_rules & {"score_shard", "harvest_shard"}:
        assert jobs[rule] == 3, jobs
    plan = planned_resources(text)
    assert {rule for rule, _ in plan} >= model_rules | {"check_variants", "all"}
    for rule, res in plan:
        if rule in model_rules:
            assert res.get("gpu") == "1" and res.get("slurm_partition") == "gpu", (rule, res)
        elif rule != "all":
            assert "gpu" not in res and res.get("slurm_partition") == "cpu", (rule, res)


def test_wrapper_dry_run_with_profile(tmp_path, monkeypatch):
    """`biointerp pipeline run ... --profile slurm --dry-run` goes through Snakemake's own profile handling."""
    from click.testing import CliRunner

    from biointerp.cli import main

    monkeypatch.chdir(REPO)
    res = CliRunner().invoke(main, ["pipeline", "run", "probe_training", "--profile", "slurm",
                                    "--dry-run", "--set", f"outdir={tmp_path / 'o'}", "--set", "n_shards=2",
                                    "--set", "harvest={enabled: true, layers: [blocks.1], view: mean}"])
    text = res.output
    assert res.exit_code == 0, text
    assert "Using profile" in text and planned_jobs(text)["harvest_shard"] == 2
    assert bp.resolve_profile("slurm") == REPO / "snakemake" / "profiles" / "slurm"
    with pytest.raises(ValueError, match="local, slurm"):
        bp.resolve_profile("nope")
    with pytest.raises(ValueError, match="known pipelines"):
        bp.snakefile("nope")


# ----------------------------------------------------------------------------- real data: BRCA1
def _brca1_subset(clinvar_vcf: Path, out: Path, every: int = 250) -> int:
    """Every `every`-th ClinVar record of the BRCA1 region plus records the region
    FASTA cannot score: one beyond the region, one on chr13, a copy of a real SNV
    record with its REF swapped (no REF of the region's records mismatches) and a
    repeated record."""
    import pysam

    tbx = pysam.TabixFile(str(clinvar_vcf), encoding="utf-8")
    header = [h for h in tbx.header]
    region = list(tbx.fetch("17", 41_100_000, 41_300_000))
    keep = region[::every]
    snv = next(ln.split("\t") for ln in region[1::every] if len(ln.split("\t")[3]) == 1
               and len(ln.split("\t")[4]) == 1)
    snv[3] = next(b for b in "ACGT" if b not in (snv[3].upper(), snv[4].upper()))
    keep.append("\t".join(snv))
    keep.append(next(iter(tbx.fetch("17", 41_300_001, 45_000_000))))  # beyond the region FASTA
    keep.append(next(iter(tbx.fetch("13", 32_890_000, 33_000_000))))  # contig absent from it
    keep.append(keep[len(keep) // 2])  # a repeated record: status duplicate
    keep = sorted(keep, key=lambda x: (x.split("\t")[0], int(x.split("\t")[1])))
    out.write_text("\n".join(header + keep) + "\n")
    return len(keep)


def _vcf_records(path: Path) -> list[tuple[str, int, str, str]]:
    opener = gzip.open if str(path).endswith(".gz") else open
    rows = []
    with opener(path, "rt") as fh:
        for line in fh:
            if not line.startswith("#"):
                f = line.rstrip("\n").split("\t")
                rows += [(f[0], int(f[1]), f[3], alt) for alt in f[4].split(",")]
    return rows


@pytest.fixture(scope="module")
def brca1_run(tmp_path_factory, clinvar_vcf, brca1_fasta):
    tmp = tmp_path_factory.mktemp("brca1")
    n_records = _brca1_subset(clinvar_vcf, tmp / "subset.vcf")
    base = {"fasta": str(brca1_fasta), "variants": str(tmp / "subset.vcf"),
            "info_fields": ["CLINICAL_SIGNIFICANCE", "GOLD_STARS", "SYMBOL"],
            "labels": {"column": "CLINICAL_SIGNIFICANCE", "scheme": "clinvar", "stars_column": "GOLD_STARS"},
            "model": MODEL, **SMALL}
    out = tmp / "three"
    cfg3 = write_config(tmp / "three.yaml", base, outdir=str(out), n_shards=3)
    # First pass stops with shard 1 missing (as after a failed job); the full run must redo it alone.
    assert bp.run("variant_scoring", cfg3, cores=2, quiet=True,
                  targets=[str(out / "shards" / f"scores.{i}.h5ad") for i in (0, 2)])
    before = {i: (out / "shards" / f"scores.{i}.h5ad").stat().st_mtime_ns for i in (0, 2)}
    plan = snakemake("-s", "pipelines/variant_scoring/Snakefile", "--configfile", str(cfg3), "-n")
    assert bp.run("variant_scoring", cfg3, cores=2, quiet=True)
    return {"tmp": tmp, "base": base, "cfg": cfg3, "out": out, "n_records": n_records, "plan": plan,
            "before": before}


def test_brca1_every_variant_with_status(brca1_run):
    import anndata as ad

    out = brca1_run["out"]
    a = ad.read_h5ad(out / "scores.h5ad")
    records = _vcf_records(brca1_run["tmp"] / "subset.vcf")
    assert a.n_obs == len(records) >= 15
    got = sorted(zip(a.obs["input_chrom"].astype(str), a.obs["input_pos"].astype(int),
                     a.obs["input_ref"].astype(str), a.obs["input_alt"].astype(str)))
    assert got == sorted(records)
    status = a.obs["status"].astype(str)
    assert {"ok", "ref_mismatch", "duplicate"} <= set(status)
    assert {"out_of_bounds", "unknown_contig"} & set(status)
    delta = np.asarray(a[:, "delta_ll"].X).ravel()
    assert np.isfinite(delta[(status == "ok").to_numpy()]).all()
    assert np.isnan(delta[(status != "ok").to_numpy()]).all()
    flat = pd.read_parquet(out / "scores.parquet")
    assert len(flat) == a.n_obs and "status" in flat.columns
    assert a.obs["label"].notna().any()  # ClinVar labels mapped


def test_brca1_database_answers_query(brca1_run):
    import anndata as ad
    from click.testing import CliRunner

    from biointerp.cli import main

    out = brca1_run["out"]
    a = ad.read_h5ad(out / "scores.h5ad")
    base = a.obs_names.str.replace(r"#\d+$", "", regex=True)  # repeated records get id#2
    counts = base.value_counts()
    vid = next(i for i in a.obs_names[(a.obs["status"].astype(str) == "ok").to_numpy()] if counts[i] == 1)
    chrom, pos, ref, alt = vid.split(":")
    alias = f"{chrom.removeprefix('chr')}-{pos}-{ref}-{alt}"  # another accepted id form
    res = CliRunner().invoke(main, ["db", "query", alias, "--db", str(out / "variants.duckdb"), "--format", "json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    rows = rows if isinstance(rows, list) else rows.get("rows", [rows])
    assert len(rows) == 1 and int(rows[0]["pos"]) == int(pos)
    expect = float(a[vid, "delta_ll"].X.ravel()[0])
    got = rows[0].get("delta_ll", rows[0].get("score"))
    assert got == pytest.approx(expect, rel=1e-5, abs=1e-6)


def test_brca1_report_and_vcf(brca1_run):
    out = brca1_run["out"]
    for f in ["report/report.md", "report/summary.tsv", "report/status_counts.png",
              "report/score_distributions.png", "annotated.vcf.gz"]:
        assert (out / f).stat().st_size > 0, f
    summary = pd.read_csv(out / "report" / "summary.tsv", sep="\t").set_index("metric")["value"]
    assert int(float(summary["n_variants"])) == brca1_run["n_records"]
    assert int(float(summary["status.ref_mismatch"])) >= 1
    ann = [ln for ln in gzip.open(out / "annotated.vcf.gz", "rt") if not ln.startswith("#")]
    assert len(ann) == brca1_run["n_records"]


def test_one_shard_equals_three(brca1_run):
    import anndata as ad

    tmp = brca1_run["tmp"]
    cfg1 = write_config(tmp / "one.yaml", brca1_run["base"], outdir=str(tmp / "one"), n_shards=1)
    assert bp.run("variant_scoring", cfg1, cores=2, quiet=True,
                  targets=[str(tmp / "one" / "scores.zeroshot.h5ad")])
    one = ad.read_h5ad(tmp / "one" / "scores.zeroshot.h5ad")
    three = ad.read_h5ad(brca1_run["out"] / "scores.zeroshot.h5ad")
    assert len(list((brca1_run["out"] / "shards").glob("scores.*.h5ad"))) == 3
    assert list(one.obs_names) == list(three.obs_names)
    assert list(one.obs["status"]) == list(three.obs["status"])
    np.testing.assert_array_equal(np.asarray(one.X), np.asarray(three.X))


def test_missing_shard_reruns_alone(brca1_run):
    """After a run that lost shard 1, only shard 1 is scored again; shards 0 and 2 are kept."""
    text = brca1_run["plan"].stdout + brca1_run["plan"].stderr
    jobs = planned_jobs(text)
    assert jobs.get("score_shard") == 1 and "check_variants" not in jobs, text
    assert "scores.1.h5ad" in text
    out = brca1_run["out"]
    after = {i: (out / "shards" / f"scores.{i}.h5ad").stat().st_mtime_ns for i in (0, 2)}
    assert after == brca1_run["before"]
    assert (out / "shards" / "scores.1.h5ad").exists()


# ----------------------------------------------------------------------------- synthetic genome: both pipelines
@pytest.fixture(scope="module")
def synth_runs(tmp_path_factory):
    """probe_training then variant_scoring (with the trained probes) on a small synthetic genome."""
    tmp = tmp_path_factory.mktemp("synth")
    inputs = tmp / "inputs"
    common = {"synthetic": {"enabled": True, "preset": "tiny", "seed": 1, "extra": "--variants-per-class 2"},
              "fasta": str(inputs / "genome.fa"), "variants": str(inputs / "variants.vcf.gz"),
              "model": MODEL, "n_shards": 1, **SMALL}
    harvest = {"enabled": True, "layers": ["blocks.2"], "view": "mean", "extra": "--upstream 64 --downstream 64"}
    out = tmp / "out"  # one outdir: variant_scoring reuses probe_training's shards
    train_cfg = write_config(tmp / "train.yaml", yaml.safe_load(bp.default_config("probe_training").read_text()),
                             **common, outdir=str(out), harvest=harvest, evaluate={"n_boot": 100})
    assert bp.run("probe_training", train_cfg, cores=2, quiet=True)
    probes = {k: str(out / "training" / "probes" / f"{k}.safetensors") for k in ("linear", "covariance")}
    vs_default = yaml.safe_load(bp.default_config("variant_scoring").read_text())
    score_base = {**vs_default, **common, "score": {**vs_default["score"], **common["score"]},
                  "synthetic": {"enabled": False}, "harvest": harvest}
    score_cfg = write_config(tmp / "score.yaml", score_base, outdir=str(out), probes=probes)
    plan = snakemake("-s", "pipelines/variant_scoring/Snakefile", "--configfile", str(score_cfg), "-n")
    assert bp.run("variant_scoring", score_cfg, cores=2, quiet=True)
    return {"tmp": tmp, "train": out / "training", "score": out, "score_base": score_base,
            "probes": probes, "score_cfg": score_cfg, "plan": plan}


def test_probe_training_outputs(synth_runs):
    from safetensors import safe_open

    out = synth_runs["train"]
    for kind in ("linear", "covariance"):
        with safe_open(str(out / "probes" / f"{kind}.safetensors"), "pt") as fh:
            assert fh.metadata() and len(fh.keys()) > 0
        metrics = json.loads((out / "eval" / f"{kind}.json").read_text())
        m = metrics.get("metrics", metrics)
        assert m["n"] > 0 and 0 <= m["auroc"] <= 1 and len(m["auroc_ci"]) == 2
    table = pd.read_csv(out / "report" / "summary.tsv", sep="\t")
    assert {"probe:linear", "probe:covariance", "zero-shot:delta_ll"} <= set(table["method"])
    assert {"baseline:variant_class", "baseline:substitution", "baseline:combined"} <= set(table["method"])
    assert {"auroc_within", "better_than_baselines_within"} <= set(table.columns)
    assert (out / "report" / "comparison.png").stat().st_size > 0
    split = pd.read_parquet(out / "split.parquet")
    genes = split[split["gene"].astype(str) != ""].groupby("gene")["split"].nunique()
    assert (genes == 1).all()  # no gene in two splits


def test_variant_scoring_reuses_training_shards(synth_runs):
    """Same outdir and model settings: scoring after training runs no model job but the probes."""
    jobs = planned_jobs(synth_runs["plan"].stdout + synth_runs["plan"].stderr)
    assert jobs.get("apply_probe") == 2, jobs
    assert not {"check_variants", "score_shard", "harvest_shard", "merge_scores"} & set(jobs), jobs


def test_variant_scoring_with_probes(synth_runs):
    import anndata as ad

    out = synth_runs["score"]
    a = ad.read_h5ad(out / "scores.h5ad")
    n_in = len(_vcf_records(Path(synth_runs["score_base"]["variants"])))
    assert a.n_obs == n_in
    assert {"delta_ll", "probe_linear", "probe_covariance"} <= set(a.var_names)
    ok = (a.obs["status"].astype(str) == "ok").to_numpy()
    assert np.isfinite(np.asarray(a[:, "probe_linear"].X).ravel()[ok]).all()
    assert set(a.obs["consequence"].astype(str)) - {""}  # consequence classes carried from the VCF
    summary = pd.read_csv(out / "report" / "summary.tsv", sep="\t").set_index("metric")["value"]
    assert {"probe_linear.auroc", "delta_ll.auroc"} <= set(summary.index)
    assert (out / "report" / "roc_by_consequence.png").stat().st_size > 0
    assert (out / "variants.duckdb").stat().st_size > 0


def test_changing_probe_reruns_only_probe_steps(synth_runs):
    cfg = write_config(synth_runs["tmp"] / "score2.yaml", synth_runs["score_base"],
                       outdir=str(synth_runs["score"]),
                       probes={**synth_runs["probes"], "linear": synth_runs["probes"]["covariance"]})
    r = snakemake("-s", "pipelines/variant_scoring/Snakefile", "--configfile", str(cfg), "-n")
    jobs = planned_jobs(r.stdout + r.stderr)
    assert jobs.get("apply_probe") == 1, r.stdout + r.stderr
    assert not {"check_variants", "score_shard", "harvest_shard", "merge_scores"} & set(jobs), jobs
    assert {"finalize_scores", "build_database", "scoring_report"} <= set(jobs)
    same = snakemake("-s", "pipelines/variant_scoring/Snakefile", "--configfile", str(synth_runs["score_cfg"]), "-n")
    assert "Nothing to be done" in same.stdout + same.stderr


def test_run_set_dotted_keys_and_unknown_keys(tmp_path):
    """`--set a.b=v` overrides one nested key; a key the config lacks is a usage error (exit 2)."""
    from click.testing import CliRunner

    from biointerp.cli import main

    out = tmp_path / "o"
    r = CliRunner().invoke(main, ["pipeline", "run", "probe_training", "--dry-run", "--set", f"outdir={out}",
                                  "--set", "synthetic.extra=--variants-per-class 1", "--set", "n_shards=1"])
    assert r.exit_code == 0, r.output
    bad = CliRunner().invoke(main, ["pipeline", "run", "probe_training", "--dry-run",
                                    "--set", "synthetic.variants_per_class=3"])
    assert bad.exit_code == 2 and "no key 'variants_per_class' at synthetic" in bad.output
