# Shared settings and helpers of the biointerp workflows (no rules here).
# Included by variant_scoring and probe_training; the config has been
# validated against variant_scoring/schemas/config.schema.yaml before this runs.
import json
import os
import sys
from pathlib import Path

# Jobs call the `biointerp` command of the interpreter that runs Snakemake, so
# a virtualenv works without activating it (a conda env, when used, comes first).
os.environ.update(PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))

# The rules run their `biointerp` command lines with biointerp_job, inside this Snakemake
# process when it runs jobs in threads (biointerp pipeline run / demo, the local profile,
# cluster jobs) so that the libraries load once per workflow and not once per job, and
# in a shell otherwise (conda, containers). See biointerp/rulejob.py.
try:
    from biointerp.rulejob import biointerp_job
except ImportError:  # a Snakemake without biointerp: every job runs in a shell (e.g. --use-conda)

    def biointerp_job(cmd):
        shell(f"biointerp {cmd} > {{log}} 2>&1", **sys._getframe(1).f_locals)

OUT = config["outdir"].rstrip("/")
SHARDS = list(range(config["n_shards"]))
VARIANTS_IS_VCF = str(config["variants"]).lower().endswith((".vcf", ".vcf.gz", ".vcf.bgz", ".bcf"))

_DEFAULT_RESOURCES = {
    "model": {"gpu": 1, "threads": 2, "mem_mb": 16000, "runtime": 120},
    "train": {"gpu": 1, "threads": 2, "mem_mb": 16000, "runtime": 120},
    "light": {"gpu": 0, "threads": 1, "mem_mb": 4000, "runtime": 30},
}


def res(group, key):
    """Resource `key` of rule group `group` (config overrides the defaults)."""
    return config["resources"].get(group, {}).get(key, _DEFAULT_RESOURCES[group][key])


def info_args():
    """--info options for `biointerp variants check`."""
    return " ".join(f"--info {k}" for k in config["info_fields"])


def layer_args():
    """--layer options for `biointerp harvest`."""
    return " ".join(f"--layer {layer}" for layer in config["harvest"]["layers"])


def shard_scores():
    """Per-shard zero-shot score tables."""
    return expand(f"{OUT}/shards/scores.{{shard}}.h5ad", shard=SHARDS)


def shard_stores():
    """Per-shard activation stores (directories)."""
    return expand(f"{OUT}/shards/store.{{shard}}", shard=SHARDS)


if config["synthetic"]["enabled"]:
    _synth_dir = Path(config["fasta"]).parent
    if Path(config["fasta"]).name != "genome.fa" or Path(config["variants"]) not in (
        _synth_dir / "variants.vcf.gz",
        _synth_dir / "variants.tsv",
    ):
        raise ValueError(
            "synthetic.enabled: fasta and variants must be DIR/genome.fa and "
            "DIR/variants.vcf.gz (or DIR/variants.tsv), the files `biointerp synth genome --out DIR` writes."
        )
