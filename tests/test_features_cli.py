"""`biointerp features train|encode|label|dashboard|explain|intervene` and `biointerp explain`, end to end (tiny)."""

import json

import anndata as ad
import pandas as pd
import pytest
from click.testing import CliRunner

from biointerp.cli import main
from biointerp.models import random_model, save_model, tiny_config
from biointerp.synth import PRESETS, SynthConfig, build


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("feat_cli")
    build(d / "g", SynthConfig(**{**PRESETS["tiny"], "contig_length": 10_000}, seed=2))
    save_model(random_model(tiny_config(hidden_size=16, num_layers=8, num_attention_heads=2, hcm_filter_length=16),
                            seed=1), d / "model", card={"name": "tiny16"})
    return d


def run(args):
    res = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return res


def test_features_cli_end_to_end(inputs):
    d, g = inputs, inputs / "g"
    fa, gff = g / "genome.fa", g / "elements.gff3"
    r = run(["features", "train", "--model", d / "model", "--fasta", fa, "--region", "synth1", "--layer", "blocks.4",
             "--out", d / "sae.safetensors", "--latents", "64", "-k", "4", "--steps", "20", "--batch-size", "256",
             "--window", "256", "--buffer-tokens", "2048", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    rep, _ = json.JSONDecoder().raw_decode(r.output[r.output.index("\n{") + 1:])  # log lines may follow
    assert rep["l0"] == pytest.approx(4.0) and "eval_loss_recovered" in rep
    assert json.loads((d / "sae.json").read_text())["layer"] == "blocks.4"
    r = run(["features", "encode", "--model", d / "model", "--sae", d / "sae.safetensors", "--fasta", fa,
             "--region", "synth2", "--window", "256", "--out", d / "f.h5ad", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    r = run(["features", "label", "--features", d / "f.h5ad", "--annotations", gff, "--min-count", "2",
             "--out", d / "fl.h5ad", "--scores", d / "scores.parquet"])
    assert r.exit_code == 0, r.output
    t = ad.read_h5ad(d / "fl.h5ad")
    assert t.shape == (10_000, 64) and {"label", "label_score", "label_f1", "label_auroc", "firing_rate"} <= set(t.var.columns)
    assert len(pd.read_parquet(d / "scores.parquet")) % 64 == 0
    r = run(["features", "dashboard", "--features", d / "fl.h5ad", "--top", "3", "--out", d / "dash"])
    assert r.exit_code == 0, r.output
    assert (d / "dash" / "index.html").read_text().count("<h2") == 3 and len(list((d / "dash").glob("*.png"))) == 3
    r = run(["features", "explain", "--model", d / "model", "--sae", d / "sae.safetensors", "--fasta", fa,
             "--variants", g / "variants.tsv", "--labels", d / "fl.h5ad", "--window", "128", "--offset", "96",
             "--top", "5", "--out", d / "ex.parquet", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    ex = pd.read_parquet(d / "ex.parquet")
    n_var = len(pd.read_csv(g / "variants.tsv", sep="\t"))
    assert ex["variant_id"].nunique() == n_var  # every input variant has a row
    vid = ex.loc[ex["status"] == "ok", "variant_id"].iat[0]
    r = run(["explain", vid, "--explanations", d / "ex.parquet", "--png", d / "v.png"])
    assert r.exit_code == 0 and "top 5 latents" in r.output and (d / "v.png").stat().st_size > 1000
    r = run(["features", "intervene", "--model", d / "model", "--sae", d / "sae.safetensors", "--fasta", fa,
             "--region", "synth2:1-300", "--latent", "3", "--mode", "steer", "--value", "5", "--generate", "5",
             "--out", d / "iv.tsv"])
    assert r.exit_code == 0, r.output
    assert len(pd.read_csv(d / "iv.tsv", sep="\t")) == 299 and "edited:" in r.output


def test_features_cli_errors(inputs, tmp_path):
    d, g = inputs, inputs / "g"
    r = CliRunner().invoke(main, ["explain", "nope:1:A:C", "--explanations", str(tmp_path / "missing.parquet")])
    assert r.exit_code != 0 and "does not exist" in r.output
    bad = tmp_path / "bad.pt"
    import torch
    torch.save({"W": torch.zeros(4, 8), "oops": torch.zeros(1)}, bad)
    r = CliRunner().invoke(main, ["features", "intervene", "--model", str(d / "model"), "--sae", str(bad), "--fasta",
                                  str(g / "genome.fa"), "--region", "synth1:1-100", "--latent", "0"])
    assert r.exit_code == 1 and "Error:" in r.output and "unknown keys ['oops']" in r.output
    r = CliRunner().invoke(main, ["features", "train", "--model", str(d / "model"), "--layer", "blocks.4",
                                  "--out", str(tmp_path / "x.safetensors")])
    assert r.exit_code == 2 and "exactly one activation source" in r.output
    r = CliRunner().invoke(main, ["features", "--help"])
    assert r.exit_code == 0 and "intervene" in r.output


def test_feature_pipeline_lint_and_plan(tmp_path):
    from pathlib import Path

    import yaml
    from test_pipelines import snakemake  # Snakemake's command line, in this process

    repo = Path(__file__).resolve().parents[1]
    snake = ["-s", "pipelines/feature_discovery/Snakefile"]
    r = snakemake(*snake, "--configfile", "pipelines/feature_discovery/config.yaml", "--lint", cwd=repo)
    assert "Congratulations, your workflow is in a good condition!" in r.stdout + r.stderr, r.stdout + r.stderr
    cfg = yaml.safe_load((repo / "pipelines/feature_discovery/config.yaml").read_text())
    cfg["outdir"] = str(tmp_path / "out")
    cfg["explain"]["enabled"] = False
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    r = snakemake(*snake, "--configfile", str(tmp_path / "c.yaml"), "-n", cwd=repo)
    assert r.returncode == 0, r.stderr
    jobs = {"synth_inputs", "train_sae", "encode_features", "label_features", "dashboard"}
    assert all(j in r.stdout for j in jobs) and "explain_variants" not in r.stdout
    cfg["label"]["by"] = "accuracy"
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(cfg))
    r = snakemake(*snake, "--configfile", str(tmp_path / "bad.yaml"), "-n", cwd=repo)
    assert r.returncode != 0 and "accuracy" in r.stdout + r.stderr


def test_features_train_enriched_at_elements(inputs, tmp_path):
    """--enrich-annotations: rows at the named elements (in region coordinates) are mixed into every batch."""
    import torch

    from biointerp.features.train import MixedRows, TensorRows

    d, g = inputs, inputs / "g"
    fa, gff = g / "genome.fa", g / "elements.gff3"
    base = ["features", "train", "--model", d / "model", "--fasta", fa, "--layer", "blocks.4", "--latents", "32",
            "-k", "4", "--steps", "10", "--batch-size", "128", "--window", "256", "--buffer-tokens", "1024",
            "--engine", "plain", "--device", "cpu"]
    r = run(base + ["--region", "synth1:2001-9000", "--enrich-annotations", gff, "--enrich-class",
                    "five_prime_cis_splice_site", "--enrich-class", "start_codon", "--enrich-fraction", "0.5",
                    "--out", tmp_path / "e.safetensors"])
    assert r.exit_code == 0, r.output
    assert "enrich:" in r.output and "five_prime_cis_splice_site, start_codon; 50% of each batch" in r.output
    assert (tmp_path / "e.safetensors").is_file()
    bad = CliRunner().invoke(main, [str(a) for a in base + ["--enrich-annotations", gff, "--enrich-class", "no_such",
                                                             "--out", tmp_path / "x.safetensors"]])
    assert bad.exit_code == 2 and "no_such" in bad.output
    half = CliRunner().invoke(main, [str(a) for a in base + ["--enrich-class", "start_codon",
                                                              "--out", tmp_path / "y.safetensors"]])
    assert half.exit_code == 2 and "go together" in half.output
    # the mixing itself: a quarter of each batch from the extra rows, the rest from the source
    src, extra = TensorRows(torch.zeros(64, 3), 16, 0), torch.ones(5, 3)
    batch = next(iter(MixedRows(src, extra, 0.25, seed=1)))
    assert batch.shape == (16, 3) and int(batch[:, 0].sum()) == 4


@pytest.mark.parametrize("name, text", [("bad.gff3", "garbage\tline\n"), ("bad.bed", "chr1\tx\ty\texon\n")])
def test_damaged_annotations_are_one_clear_error(inputs, tmp_path, name, text):
    """A damaged annotation file: exit 1 and one `Error:` line naming it, for label and for train --enrich."""
    d, g = inputs, inputs / "g"
    bad = tmp_path / name
    bad.write_text(text)
    train = run(["features", "train", "--model", d / "model", "--fasta", g / "genome.fa", "--layer", "blocks.4",
                 "--steps", "2", "--engine", "plain", "--out", tmp_path / "s.safetensors", "--device", "cpu",
                 "--enrich-annotations", bad, "--enrich-class", "exon"])
    assert train.exit_code == 1 and f"Error: {bad}:" in train.output and "Traceback" not in train.output
    assert "no numeric start/end" in train.output
