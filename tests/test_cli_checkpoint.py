"""`score --model evo2_7b --checkpoint ... --model-config ...` loads a local checkpoint in the
official format (the golden tiny checkpoint of ../shared/evo2_parity) under a registered name."""

import numpy as np
from click.testing import CliRunner

from biointerp.cli import main
from biointerp.genome import Genome
from biointerp.models import load_model
from biointerp.scoring import score_variants
from biointerp.tables import read_scores
from biointerp.variants import read_variants


def test_score_with_registered_name_and_local_checkpoint(tmp_path, parity_dir, brca1_fasta, clinvar_vcf):
    table = tmp_path / "v.parquet"
    r = CliRunner().invoke(main, ["variants", "check", "--fasta", str(brca1_fasta), "--vcf", str(clinvar_vcf),
                                  "--region", "17:41196000-41197000", "--out", str(table)])
    assert r.exit_code == 0, r.output
    args = ["score", "--model", "evo2_7b", "--checkpoint", str(parity_dir / "weights.pt"),
            "--model-config", str(parity_dir / "config.yml"), "--fasta", str(brca1_fasta),
            "--variants", str(table), "--window", "256", "--out", str(tmp_path / "s.h5ad")]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    got = read_scores(tmp_path / "s.h5ad")
    genome = Genome(brca1_fasta)
    model = load_model("evo2_7b", checkpoint=parity_dir / "weights.safetensors", config=parity_dir / "config.yml")
    want = score_variants(model, genome, read_variants(table, genome), window=256, progress=False)
    assert got.n_obs == len(want) > 0
    np.testing.assert_allclose(got[:, "delta_ll"].X.ravel(), want["delta_ll"].to_numpy(), rtol=1e-5, atol=1e-6)


def test_unreadable_checkpoint_is_a_clear_error(tmp_path, parity_dir, brca1_fasta, clinvar_vcf):
    bad = tmp_path / "evo2_7b.pt"
    bad.write_bytes(b"not a checkpoint")
    r = CliRunner().invoke(main, ["score", "--model", "evo2_7b", "--checkpoint", str(bad),
                                  "--model-config", str(parity_dir / "config.yml"), "--fasta", str(brca1_fasta),
                                  "--variants", str(clinvar_vcf), "--out", str(tmp_path / "s.h5ad")])
    assert r.exit_code != 0
    assert "not a readable PyTorch checkpoint" in r.output and "Traceback" not in r.output
