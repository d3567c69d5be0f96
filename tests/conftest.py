"""Shared test fixtures: location of ../shared/data and small helpers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("BIOINTERP_SHARED", REPO.parent / "shared"))
SHARED_DATA = SHARED / "data"
PARITY = SHARED / "evo2_parity"

# Test models are tiny: one thread is faster than two and keeps timings stable on a shared machine.
torch.set_num_threads(1)


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.fail(
            f"real test data missing: {path}. Check out the project with ../shared beside it "
            "(or set BIOINTERP_SHARED to the folder holding data/ and evo2_parity/)."
        )
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to ../shared/data (fails with a clear message when it is missing)."""
    return _need(SHARED_DATA)


@pytest.fixture(scope="session")
def parity_dir() -> Path:
    """Path to ../shared/evo2_parity."""
    return _need(PARITY)


@pytest.fixture(scope="session")
def clinvar_vcf(shared_data) -> Path:
    return _need(shared_data / "variants" / "clinvar_20161102.GRCh37.vcf.gz")


@pytest.fixture(scope="session")
def brca1_fasta(shared_data) -> Path:
    return _need(shared_data / "reference" / "brca1_region.GRCh37.fa")


@pytest.fixture(scope="session")
def brca2_fasta(shared_data) -> Path:
    return _need(shared_data / "reference" / "brca2_region.GRCh37.fa")
