"""Probes on model activations: linear and covariance probes, training, splits,
evaluation and safetensors artifacts (see DESIGN.md and docs/INTERFACES.md)."""

from biointerp.probes.artifact import ProbeFileError, build_probe, check_tensors, load_probe, read_card, save_probe
from biointerp.probes.covariance import (CovarianceBackbone, CovarianceProbe, MultiHeadCovarianceProbe,
                                         newton_schulz_sqrt)
from biointerp.probes.evaluate import (apply_calibration, auprc, auroc, evaluate, fit_calibration,
                                       reliability_table, stratified)
from biointerp.probes.linear import LinearProbe, featurize, fit_linear
from biointerp.probes.splits import make_split, split_by_chrom, split_by_gene, split_from_column

# Training pulls in lightning (seconds to import): load it only when a training name is used,
# so applying or inspecting a probe stays quick.
_TRAINING = {"InMemorySource", "TrainResult", "predict", "train_probe"}


def __getattr__(name: str):
    if name in _TRAINING:
        from biointerp.probes import training

        return getattr(training, name)
    raise AttributeError(f"module 'biointerp.probes' has no attribute {name!r}")

__all__ = [
    "CovarianceBackbone", "CovarianceProbe", "MultiHeadCovarianceProbe", "LinearProbe", "InMemorySource",
    "ProbeFileError", "TrainResult", "apply_calibration", "auprc", "auroc", "build_probe", "check_tensors", "evaluate", "featurize",
    "fit_calibration", "fit_linear", "load_probe", "make_split", "newton_schulz_sqrt", "predict",
    "read_card", "reliability_table", "save_probe", "split_by_chrom", "split_by_gene", "split_from_column",
    "stratified", "train_probe",
]
