# Shared settings and helpers of feature_discovery (no rules here).
import sys

# The rules run their `biointerp` command lines with biointerp_job (biointerp/rulejob.py), inside
# this Snakemake process when it runs jobs in threads, in a shell otherwise.
try:
    from biointerp.rulejob import biointerp_job
except ImportError:  # a Snakemake without biointerp: every job runs in a shell (e.g. --use-conda)

    def biointerp_job(cmd):
        shell(f"biointerp {cmd} > {{log}} 2>&1", **sys._getframe(1).f_locals)


_DEFAULT_RESOURCES = {
    "model": {"gpu": 1, "threads": 2, "mem_mb": 16000, "runtime": 120},
    "light": {"gpu": 0, "threads": 1, "mem_mb": 4000, "runtime": 30},
}


def res(group, key):
    """Resource `key` of rule group `group` (config overrides the defaults)."""
    return config["resources"].get(group, {}).get(key, _DEFAULT_RESOURCES[group][key])


def region_args(regions):
    return " ".join(f"--region {r}" for r in regions)
