# Shared settings and helpers of feature_discovery (no rules here).

_DEFAULT_RESOURCES = {
    "model": {"gpu": 1, "threads": 2, "mem_mb": 16000, "runtime": 120},
    "light": {"gpu": 0, "threads": 1, "mem_mb": 4000, "runtime": 30},
}


def res(group, key):
    """Resource `key` of rule group `group` (config overrides the defaults)."""
    return config["resources"].get(group, {}).get(key, _DEFAULT_RESOURCES[group][key])


def region_args(regions):
    return " ".join(f"--region {r}" for r in regions)
