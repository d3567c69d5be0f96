# Settings and helpers of cohort_biomarkers (no rules here). The config has been
# validated against schemas/config.schema.yaml (defaults filled in) before this runs.
import os
import sys
from pathlib import Path

# Jobs call the `biointerp` command of the interpreter that runs Snakemake (a venv works unactivated).
os.environ.update(PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))

# The rules run their `biointerp` command lines with biointerp_job (biointerp/rulejob.py), inside
# this Snakemake process when it runs jobs in threads, in a shell otherwise.
try:
    from biointerp.rulejob import biointerp_job
except ImportError:  # a Snakemake without biointerp: every job runs in a shell (e.g. --use-conda)

    def biointerp_job(cmd):
        shell(f"biointerp {cmd} > {{log}} 2>&1", **sys._getframe(1).f_locals)

OUT = config["outdir"].rstrip("/")
INP = config["input"]
KIND = INP["kind"]
SEQUENCE_PATH = KIND in ("vcf", "methylation")
SIM = config["simulate"]["enabled"]

_DEFAULT_RESOURCES = {
    "model": {"gpu": 1, "threads": 2, "mem_mb": 16000, "runtime": 120},
    "light": {"gpu": 0, "threads": 1, "mem_mb": 4000, "runtime": 30},
}


def res(group, key):
    """Resource `key` of rule group `group` (config overrides the defaults)."""
    return config["resources"].get(group, {}).get(key, _DEFAULT_RESOURCES[group][key])


def opt(flag, values):
    """`--flag v` for each value."""
    return " ".join(f"{flag} {v}" for v in values)


def label_args():
    """Label and case/control options shared by the input commands."""
    sample = f"--sample-column {INP['sample_column']}" if INP["sample_column"] else ""
    return f"--label-column {INP['label_column']} {opt('--case', INP['case'])} {opt('--control', INP['control'])} {sample}"


def data_inputs():
    """The cohort's data file (VCF or beta matrix) as a named input; none for bedMethyl sheets."""
    if KIND == "vcf":
        return {"vcf": INP["vcf"]}
    return {"beta": INP["beta"]} if INP.get("beta") else {}


def sequence_options():
    """Options of `cohort sequences` for the VCF or the methylation path."""
    s = config["sequences"]
    if KIND == "vcf":
        return f"--unphased {s['unphased']}" + (" --pass-only" if s["pass_only"] else "")
    return (f"--threshold {s['threshold']} --missing {s['missing']} {opt('--encoding', s['encodings'])} "
            f"--min-coverage {s['min_coverage']}")


def data_option(input):
    """--vcf / --beta / --bedmethyl-column for `cohort sequences`."""
    if KIND == "vcf":
        return f"--vcf {input.vcf}"
    return f"--beta {input.beta}" if INP.get("beta") else f"--bedmethyl-column {INP['bedmethyl_column']}"


if SIM:
    if KIND not in ("vcf", "methylation"):
        raise ValueError("simulate.enabled needs input.kind vcf or methylation")
    _sim = f"{OUT}/inputs"
    INP.update(samples=f"{_sim}/samples.tsv", fasta=f"{_sim}/genome.fa", regions=f"{_sim}/regions.bed")
    if KIND == "vcf":
        INP["vcf"] = f"{_sim}/cohort.vcf.gz"
    else:
        INP["beta"] = f"{_sim}/methylation_beta.tsv.gz"
else:
    _need = {"vcf": ["samples", "fasta", "regions", "vcf"], "methylation": ["samples", "fasta", "regions"],
             "matrix": ["samples", "matrix"]}[KIND]
    _missing = [k for k in _need if not INP.get(k)]
    if KIND == "methylation" and not (INP.get("beta") or INP.get("bedmethyl_column")):
        _missing.append("beta or bedmethyl_column")
    if _missing:
        raise ValueError(f"input.kind {KIND} needs input keys {_missing}")
