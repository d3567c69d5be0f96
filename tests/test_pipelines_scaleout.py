"""Scale-out behaviour of the Snakemake workflows beyond the slurm dry run of
test_pipelines.py: the kubernetes profile's plan (GPU resources, storage) and
the retry of a model job that fails for real on its first attempt."""

from __future__ import annotations

import gzip
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from test_pipelines import (
    MODEL,
    REPO,
    SMALL,
    planned_jobs,
    planned_resources,
    snakemake,
    snakemake_process,
    write_config,
)

from biointerp import pipeline as bp

PROFILES = REPO / "snakemake" / "profiles"


# ----------------------------------------------------------------------------- kubernetes dry run
@pytest.mark.parametrize("name,model_rules", [
    ("variant_scoring", {"score_shard"}),
    ("probe_training", {"score_shard", "harvest_shard", "train_probe"}),
])
def test_kubernetes_dry_run_plans_gpu_jobs(name, model_rules, tmp_path):
    """The kubernetes profile plans every job, with `gpu: 1` + `gpu_manufacturer: nvidia`
    (the plugin's keys for an `nvidia.com/gpu` request and toleration) on the model rules only.

    The profile's S3 storage cannot be planned offline (a dry run asks the bucket
    whether each output exists), so the storage provider is swapped for the
    shared-filesystem one on the command line; the executor, its settings and the
    resources all come from the profile.
    """
    pytest.importorskip("snakemake_executor_plugin_kubernetes",
                        reason="needs snakemake-executor-plugin-kubernetes (pip install -e '.[dev]')")
    pytest.importorskip("snakemake_storage_plugin_fs",
                        reason="needs snakemake-storage-plugin-fs (pip install -e '.[dev]')")
    profile = yaml.safe_load((PROFILES / "kubernetes" / "config.yaml").read_text())
    assert profile["executor"] == "kubernetes" and profile["default-storage-provider"] == "s3"
    base = yaml.safe_load(bp.default_config(name).read_text())
    cfg = write_config(tmp_path / "c.yaml", base, n_shards=3, outdir="out")  # relative: lives under the prefix
    store = tmp_path / "store"
    r = snakemake("-s", str(bp.snakefile(name)), "--configfile", str(cfg),
                  "--profile", str(PROFILES / "kubernetes"), "--dry-run",
                  "--default-storage-provider", "fs", "--default-storage-prefix", str(store), cwd=tmp_path)
    text = r.stdout + r.stderr
    assert r.returncode == 0, text
    assert f"Using profile {PROFILES / 'kubernetes'}" in text
    jobs = planned_jobs(text)
    for rule in model_rules & {"score_shard", "harvest_shard"}:
        assert jobs[rule] == 3, jobs
    # no shared filesystem: outputs go to the storage prefix
    assert f"{store}/out/shards/scores.2.h5ad (send to storage)" in text
    plan = planned_resources(text)
    assert {rule for rule, _ in plan} >= model_rules | {"check_variants", "all"}
    want = profile["set-resources"]
    for rule, res in plan:
        if rule in model_rules:
            assert res.get("gpu") == "1" and res.get("gpu_manufacturer") == "nvidia", (rule, res)
            assert res.get("mem_mb") == str(want[rule]["mem_mb"]), (rule, res)
        elif rule != "all":
            # the plugin asks for a GPU whenever `gpu` is set (and fails without gpu_manufacturer)
            assert "gpu" not in res and "gpu_manufacturer" not in res, (rule, res)
            assert res.get("mem_mb") == str(profile["default-resources"]["mem_mb"]), (rule, res)


# ----------------------------------------------------------------------------- retry of a failing job
def _vcf_records(path: Path) -> int:
    with gzip.open(path, "rt") as fh:
        return sum(len(ln.split("\t")[4].split(",")) for ln in fh if not ln.startswith("#"))


def test_transient_shard_failure_is_retried(tmp_path):
    """A score_shard job whose input is corrupt on its first attempt fails for real,
    is restarted (config `retries: 1`, the rules' `retries:`), and the run completes
    with the same scores as an undisturbed run.

    The test truncates the checked variant table before the run and puts the
    original bytes back (atomically, same mtime) as soon as a shard log shows the
    read error; the retry runs `biointerp score` again, which reads the repaired file.
    """
    import anndata as ad

    inputs = tmp_path / "inputs"
    out = tmp_path / "out"
    base = {**yaml.safe_load(bp.default_config("variant_scoring").read_text()), **SMALL,
            "synthetic": {"enabled": True, "preset": "tiny", "seed": 1, "extra": "--variants-per-class 2"},
            "fasta": str(inputs / "genome.fa"), "variants": str(inputs / "variants.vcf.gz"), "model": MODEL,
            "database": False, "report": False}
    cfg = write_config(tmp_path / "c.yaml", base, outdir=str(out), n_shards=2, retries=1)
    sf = str(bp.snakefile("variant_scoring"))

    # inputs and the checked variant table, as an earlier stage of the run leaves them
    checked = out / "variants" / "checked.parquet"
    # a plain `snakemake` process, as a user runs it: without a profile each job is a process of its own
    r = snakemake_process("-s", sf, "--configfile", str(cfg), "--cores", "2",
                          str(out / "variants" / "labelled.parquet"), cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    good, st = checked.read_bytes(), checked.stat()
    checked.write_bytes(good[: len(good) // 2])  # what a half-synced shared filesystem would serve
    os.utime(checked, ns=(st.st_atime_ns, st.st_mtime_ns))  # same mtime: nothing upstream reruns

    first_failure: list[tuple[str, str]] = []
    stop = threading.Event()

    def repair_after_first_failure():
        while not stop.is_set():
            for log in sorted((out / "logs").glob("score.*.log")):
                text = log.read_text(errors="replace")
                if "Error: --variants" in text:
                    tmp = checked.with_suffix(".repair")
                    tmp.write_bytes(good)
                    os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
                    os.replace(tmp, checked)  # readers see the corrupt file or the good one, never half of it
                    first_failure.append((log.name, text))
                    return
            time.sleep(0.005)

    watcher = threading.Thread(target=repair_after_first_failure, daemon=True)
    watcher.start()
    try:
        r = snakemake("-s", sf, "--configfile", str(cfg), "--profile", str(PROFILES / "local"), cwd=tmp_path)
    finally:
        stop.set()
        watcher.join(5)
    text = r.stdout + r.stderr
    assert r.returncode == 0, text
    assert first_failure, "no shard failed on its first attempt:\n" + text
    assert "Parquet magic bytes not found" in first_failure[0][1]
    n_failed = text.count("Error in rule score_shard:")
    assert 1 <= n_failed <= 2 and text.count("Trying to restart job") == n_failed, text
    assert text.count("Error in rule ") == n_failed, text  # no other rule failed
    assert "(100%) done" in text

    # the outputs are complete and equal to an undisturbed single-shard run
    a = ad.read_h5ad(out / "scores.h5ad")
    assert a.n_obs == _vcf_records(inputs / "variants.vcf.gz")
    ok = (a.obs["status"].astype(str) == "ok").to_numpy()
    assert ok.sum() > 0 and np.isfinite(np.asarray(a[:, "delta_ll"].X).ravel()[ok]).all()
    ref_cfg = write_config(tmp_path / "ref.yaml", base, outdir=str(tmp_path / "ref"), n_shards=1)
    assert bp.run("variant_scoring", ref_cfg, cores=2, quiet=True, workdir=tmp_path,
                  targets=[str(tmp_path / "ref" / "scores.zeroshot.h5ad")])
    ref = ad.read_h5ad(tmp_path / "ref" / "scores.zeroshot.h5ad")
    got = ad.read_h5ad(out / "scores.zeroshot.h5ad")
    assert list(got.obs_names) == list(ref.obs_names)
    np.testing.assert_array_equal(np.asarray(got.X), np.asarray(ref.X))
    # the repaired table kept its mtime: nothing is out of date afterwards
    again = snakemake("-s", sf, "--configfile", str(cfg), "-n", cwd=tmp_path)
    assert "Nothing to be done" in again.stdout + again.stderr, again.stdout + again.stderr
