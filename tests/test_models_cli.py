"""`biointerp models list|info|forward` on the parity model directory."""

from __future__ import annotations

import json

import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from biointerp.cli import main
from biointerp.models import load_model


def test_list_and_info(parity_dir):
    r = CliRunner().invoke(main, ["models", "list", "--json"])
    assert r.exit_code == 0, r.output
    assert {"demo", "evo2_7b", "evo2_40b"} <= {row["name"] for row in json.loads(r.output)}
    r = CliRunner().invoke(main, ["models", "info", str(parity_dir), "--layers"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.output)
    assert info["blocks"] == "SMLASMLA" and info["d_model"] == 64 and "blocks.3.mlp.l3" in info["layer_names"]


def test_forward_writes_logits_and_activations(parity_dir, tmp_path):
    out = tmp_path / "acts.safetensors"
    seqs = tmp_path / "seqs.fa"
    seqs.write_text(">a\nACGTACGTTG\nCA\n>b\nacgta\n")
    r = CliRunner().invoke(main, ["models", "forward", str(parity_dir), "--sequences-file", str(seqs),
                                  "-l", "blocks.3", "--out", str(out), "--batch-size", "2"])
    assert r.exit_code == 0, r.output
    t = load_file(str(out))
    assert t["a/blocks.3"].shape == (12, 64) and t["b/logits"].shape == (5, 512)
    m = load_model(parity_dir)
    ids, _ = m.tokenize(["ACGTA"])
    # batched with padding (FFT sizes differ) vs alone: equal to fp32 rounding
    torch.testing.assert_close(t["b/logits"], m.forward(ids).logits[0], rtol=0, atol=1e-4)
    lp = m.log_probs(ids)[0].mean().item()
    line = next(x for x in r.output.splitlines() if "b\tlength=5\t" in x)
    assert abs(float(line.split("mean_log_likelihood=")[1]) - lp) < 1e-3


def test_forward_errors_are_clear(parity_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("BIOINTERP_CHECKPOINTS", str(tmp_path))
    r = CliRunner().invoke(main, ["models", "forward", "evo2_7b", "-s", "ACGT"])
    assert r.exit_code != 0 and "--checkpoint" in r.output and "evo2_7b.pt" in r.output
    r = CliRunner().invoke(main, ["models", "forward", str(parity_dir), "-s", "ACGU"])
    assert r.exit_code == 2 and "ACGTN" in r.output
    r = CliRunner().invoke(main, ["models", "forward", str(parity_dir), "-s", "ACG", "-l", "blocks.99"])
    assert r.exit_code == 2 and "unknown layer" in r.output
