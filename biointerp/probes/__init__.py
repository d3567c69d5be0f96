"""Probes on model activations: linear and covariance probes, training, splits,
evaluation and safetensors artifacts (see DESIGN.md and docs/INTERFACES.md)."""

# Every name is loaded on first use from its module (PEP 562), so `biointerp.probes.splits`
# does not import torch and applying a probe does not import lightning (seconds each).
_EXPORTS = {
    "artifact": ["ProbeFileError", "build_probe", "check_tensors", "load_probe", "read_card", "save_probe"],
    "covariance": ["CovarianceBackbone", "CovarianceProbe", "MultiHeadCovarianceProbe", "newton_schulz_sqrt"],
    "evaluate": ["apply_calibration", "auprc", "auroc", "evaluate", "fit_calibration", "reliability_table",
                 "stratified"],
    "linear": ["LinearProbe", "featurize", "fit_linear"],
    "splits": ["make_split", "split_by_chrom", "split_by_gene", "split_from_column"],
    "training": ["InMemorySource", "TrainResult", "predict", "train_probe"],
}
_MODULE_OF = {name: mod for mod, names in _EXPORTS.items() for name in names}

# `evaluate` is also a submodule's name: importing biointerp.probes.evaluate (anywhere) would make
# the package attribute the module. Bound here, after that import, it stays the function as before.
# (numpy + pandas only: what every probe step loads anyway.)
from biointerp.probes.evaluate import evaluate  # noqa: E402


def __getattr__(name: str):
    mod = _MODULE_OF.get(name)
    if mod is None:
        raise AttributeError(f"module 'biointerp.probes' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"biointerp.probes.{mod}"), name)


def __dir__():
    return sorted([*globals(), *_MODULE_OF])


__all__ = sorted(_MODULE_OF)
