"""`biointerp probe train|apply|evaluate|show|finetune` end to end on small generated stores."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import save_file

from biointerp.cli import main
from biointerp.store import ActivationStore
from biointerp.tables import read_scores


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """Two stores (two 'shards') of EVEE views with a planted second-order label,
    a labels table with gene/consequence, one non-ok variant and one variant missing from the stores."""
    d = tmp_path_factory.mktemp("probe_cli")
    g = torch.Generator().manual_seed(0)
    n, K, dm = 300, 8, 8
    y = torch.randint(0, 2, (n,), generator=g)
    ref = torch.randn(n, 2, K, dm, generator=g)
    z = torch.randn(n, 2, K, dm, generator=g)
    z[..., 1] = 0.8 * (2 * y - 1).float()[:, None, None] * z[..., 0] + 0.6 * z[..., 1]
    z[..., 2] += 0.4 * (2 * y - 1).float()[:, None, None]  # plus a linear component
    acts = torch.stack([ref + 0.1 * z, ref, ref], 2).half()
    ids = [f"chr1:{1000 + i}:A:G" for i in range(n)]
    pos = torch.arange(K).expand(n, 2, K).clone()
    for part, sl in enumerate((slice(0, 150), slice(150, 300))):
        st = ActivationStore.create(d / f"store{part}", {"model": "synthetic", "layer": "blocks.0", "K": K, "d": dm})
        st.write_shard(ids[sl], {"acts": acts[sl], "positions": pos[sl]})
    ActivationStore.open(d / "store1").record_status(["chr1:5000:N:A"], "ref_mismatch", "REF is N")
    labels = pd.DataFrame({
        "variant_id": ids + ["chr1:5000:N:A", "chr1:6000:C:T"],
        "chrom": "chr1", "pos": list(range(1000, 1000 + n)) + [5000, 6000],
        "label": np.r_[np.where(y.numpy() == 1, "pathogenic", "benign"), ["pathogenic", "benign"]],
        "gene": [f"G{i % 25}" for i in range(n)] + ["G1", "G2"],
        "consequence": np.r_[np.where(np.arange(n) % 2, "missense", "intron"), ["missense", "intron"]],
        "status": ["ok"] * n + ["ref_mismatch", "ok"],
    })
    # a repeated input record (status duplicate) keeps its own row in score tables
    labels = pd.concat([labels, labels.iloc[[0]].assign(status="duplicate")], ignore_index=True)
    labels.to_parquet(d / "labels.parquet", index=False)
    return d


def _run(args, ok=True):
    r = CliRunner().invoke(main, args, catch_exceptions=False)
    if ok:
        assert r.exit_code == 0, r.output
    return r


def test_train_show_apply_evaluate(workdir):
    d = workdir
    stores = ["--store", str(d / "store0"), "--store", str(d / "store1")]
    for kind in ("linear", "covariance"):
        r = _run(["probe", "train", *stores, "--labels", str(d / "labels.parquet"), "--kind", kind, "--h", "8",
                  "--p", "16", "--lr", "1e-2", "--epochs", "20", "--n-boot", "200", "--calibrate", "platt",
                  "--report-dir", str(d / f"report_{kind}"), "--out", str(d / f"{kind}.safetensors")])
        assert "test split:" in r.output and "AUROC" in r.output
    assert (d / "report_covariance" / "roc.png").stat().st_size > 1000
    split = pd.read_csv(d / "report_covariance" / "split.tsv", sep="\t").merge(
        pd.read_parquet(d / "labels.parquet"), on="variant_id")
    assert split.groupby("gene")["split"].nunique().max() == 1  # gene split, no leak

    r = _run(["probe", "show", str(d / "covariance.safetensors"), "--json"])
    card = json.loads(r.output)["card"]
    assert card["kind"] == "covariance" and card["model"] == "synthetic" and card["views"] == ["var_same", "ref_cross"]
    assert card["calibration"]["pathogenicity"]["method"] == "platt"
    m = card["metrics"]["test"]["pathogenicity"]
    assert m["auroc"] > 0.9 and m["auroc_ci"][0] <= m["auroc"] <= m["auroc_ci"][1]
    assert {s["stratum"] for s in card["metrics"]["test_strata"]["pathogenicity"]} == {"all", "intron", "missense"}
    assert len(card["data_fingerprint"]) == 16

    out = d / "scores.h5ad"
    _run(["probe", "apply", "--probe", str(d / "covariance.safetensors"), *stores,
          "--variants", str(d / "labels.parquet"), "--out", str(out)])
    _run(["probe", "apply", "--probe", str(d / "linear.safetensors"), *stores, "--scores", str(out),
          "--name", "probe_linear", "--out", str(out)])
    a = read_scores(out)
    assert a.n_obs == 303  # every input row kept, the repeated record too
    assert a.obs.loc["chr1:1000:A:G#2", "status"] == "duplicate"
    assert {"pathogenicity", "pathogenicity_calibrated", "probe_linear"} <= set(a.var_names)
    s = pd.Series(np.asarray(a[:, "pathogenicity"].X).ravel(), index=a.obs_names)
    assert np.isnan(s["chr1:5000:N:A"]) and np.isnan(s["chr1:6000:C:T"]) and np.isnan(s["chr1:1000:A:G#2"])
    assert s.notna().sum() == 300

    r = _run(["probe", "evaluate", "--scores", str(out), "--score", "pathogenicity", "--score", "probe_linear",
              "--labels", str(d / "report_covariance" / "split.tsv"), "--split-column", "split",
              "--n-boot", "100", "--out-dir", str(d / "eval")])
    res = json.loads((d / "eval" / "metrics.json").read_text())
    assert res["scores"]["pathogenicity"]["auroc"] == pytest.approx(m["auroc"], abs=1e-6)
    assert (d / "eval" / "calibration.png").exists() and (d / "eval" / "strata.tsv").exists()
    # probe mode (what the probe_training pipeline calls)
    _run(["probe", "evaluate", "--probe", str(d / "linear.safetensors"), *stores, "--labels",
          str(d / "labels.parquet"), "--n-boot", "50", "--out", str(d / "lin.json")])
    assert json.loads((d / "lin.json").read_text())["metrics"]["n"] == 300


def test_apply_card_less_evee_file_and_finetune(workdir):
    d = workdir
    g = torch.Generator().manual_seed(3)
    sd = {f"proj_{s}_{r}": torch.randn(4, 8, generator=g) for s in ("left", "right") for r in ("fwd", "bwd")}
    sd.update({f"proj_{s}_{r}_bias": torch.randn(4, generator=g) for s in ("left", "right") for r in ("fwd", "bwd")})
    sd.update({"head_left": torch.randn(6, 4, generator=g), "head_right": torch.randn(6, 4, generator=g),
               "out_weight": torch.randn(2, 6, generator=g), "out_bias": torch.zeros(2), "eye": torch.eye(4)})
    save_file(sd, str(d / "evee_probe.safetensors"))
    r = _run(["probe", "apply", "--probe", str(d / "evee_probe.safetensors"), "--store", str(d / "store0"),
              "--out", str(d / "evee.h5ad")], ok=False)
    assert r.exit_code != 0 and "--kind covariance --d-model" in r.output
    _run(["probe", "apply", "--probe", str(d / "evee_probe.safetensors"), "--kind", "covariance", "--d-model", "8",
          "--store", str(d / "store0"), "--out", str(d / "evee.h5ad")])
    a = read_scores(d / "evee.h5ad")
    assert a.n_obs == 150 and np.isfinite(np.asarray(a.X)).all()
    r = _run(["probe", "apply", "--probe", str(d / "evee_probe.safetensors"), "--kind", "covariance", "--d-model",
              "4096", "--store", str(d / "store0"), "--out", str(d / "x.h5ad")], ok=False)
    assert r.exit_code != 0 and "d=8" in r.output

    labels = pd.read_parquet(d / "labels.parquet")
    labels["is_missense"] = (labels["consequence"] == "missense").astype(int)
    labels.to_csv(d / "labels2.tsv", sep="\t", index=False)
    _run(["probe", "train", "--store", str(d / "store0"), "--store", str(d / "store1"), "--labels",
          str(d / "labels.parquet"), "--kind", "covariance", "--h", "8", "--p", "16", "--epochs", "3",
          "--n-boot", "0", "--out", str(d / "base.safetensors")])
    r = _run(["probe", "finetune", "--probe", str(d / "base.safetensors"), "--store", str(d / "store0"), "--store",
              str(d / "store1"), "--labels", str(d / "labels2.tsv"), "--label-column", "is_missense",
              "--add-head", "missense", "--epochs", "3", "--n-boot", "0", "--out", str(d / "ft.safetensors")])
    card = json.loads(_run(["probe", "show", str(d / "ft.safetensors"), "--json"]).output)["card"]
    assert card["kind"] == "covariance_multihead" and set(card["heads"]) == {"pathogenicity", "missense"}
    assert card["finetuned_from"]["file"].endswith("base.safetensors")


def test_clear_errors(workdir):
    d = workdir
    r = _run(["probe", "train", "--store", str(d / "nostore"), "--labels", str(d / "labels.parquet"),
              "--out", str(d / "x.safetensors")], ok=False)
    assert r.exit_code != 0 and "not an activation store" in r.output
    r = _run(["probe", "train", "--store", str(d / "store0"), "--labels", str(d / "labels.parquet"),
              "--label-column", "nope", "--out", str(d / "x.safetensors")], ok=False)
    assert r.exit_code != 0 and "label column 'nope'" in r.output
    r = _run(["probe", "train", "--store", str(d / "store0"), "--labels", str(d / "labels.parquet"),
              "--out", str(d / "x.pt")], ok=False)
    assert r.exit_code != 0 and ".safetensors" in r.output
    r = _run(["probe", "show", str(d / "missing.safetensors")], ok=False)
    assert r.exit_code != 0 and "not found" in r.output


def test_pooled_store_linear_and_covariance(tmp_path):
    """Pooled harvests (emb.<layer>.mean + .ref, as the probe_training pipeline's default view)
    train both kinds; the covariance probe sees the (alt - ref) diff as one position."""
    g = torch.Generator().manual_seed(1)
    n, dm = 240, 12
    y = torch.randint(0, 2, (n,), generator=g)
    ref = torch.randn(n, dm, generator=g)
    alt = ref + 0.3 * torch.randn(n, dm, generator=g)
    alt[:, 0] += 0.5 * (2 * y - 1).float()
    ids = [f"chr2:{100 + i}:C:T" for i in range(n)]
    st = ActivationStore.create(tmp_path / "pooled", {"model": "synthetic", "layers": ["blocks.2"], "view": "mean"})
    st.write_shard(ids, {"emb.blocks.2.mean": alt, "emb.blocks.2.mean.ref": ref})
    pd.DataFrame({"variant_id": ids, "label": y.numpy(), "gene": [f"G{i % 12}" for i in range(n)],
                  "split": np.where(np.arange(n) < 180, "train", "test")}).to_parquet(tmp_path / "l.parquet")
    for kind in ("linear", "covariance"):
        _run(["probe", "train", "--store", str(tmp_path / "pooled"), "--labels", str(tmp_path / "l.parquet"),
              "--split-column", "split", "--kind", kind, "--h", "4", "--p", "8", "--lr", "1e-2", "--epochs", "15",
              "--n-boot", "50", "--out", str(tmp_path / f"{kind}.safetensors")])
        card = json.loads(_run(["probe", "show", str(tmp_path / f"{kind}.safetensors"), "--json"]).output)["card"]
        assert card["input"] == {"tensor": "emb.blocks.2.mean", "pair": True}
        assert card["pooling"] == "mean" and card["metrics"]["test"]["pathogenicity"]["auroc"] > 0.8


@pytest.fixture(scope="module")
def shifted(tmp_path_factory):
    """An acts store whose ref_same and ref_cross views differ (as downstream of an indel),
    a diff store (view=evee_diff layout) of the same variants, and labels with a split column."""
    d = tmp_path_factory.mktemp("probe_pairing_cli")
    g = torch.Generator().manual_seed(7)
    n, K, dm = 160, 6, 6
    y = torch.randint(0, 2, (n,), generator=g)
    sgn = (2 * y - 1).float()[:, None, None]
    ref_same = torch.randn(n, 2, K, dm, generator=g)
    ref_cross = ref_same + 0.5 * torch.randn(n, 2, K, dm, generator=g)
    z = torch.randn(n, 2, K, dm, generator=g)
    z[..., 1] = 0.8 * sgn * z[..., 0] + 0.6 * z[..., 1]
    z[..., 2] += 0.4 * sgn
    acts = torch.stack([ref_same + 0.3 * z, ref_same, ref_cross], 2).half()
    ids = [f"chr3:{2000 + i}:A:AT" for i in range(n)]
    pos = torch.arange(K).expand(n, 2, K).clone()
    pos[::7, 1, -2:] = -1  # some padding
    st = ActivationStore.create(d / "acts", {"model": "synthetic", "layer": "blocks.0", "K": K, "d": dm})
    st.write_shard(ids, {"acts": acts, "positions": pos})
    a32 = acts.float()
    sd = ActivationStore.create(d / "diff", {"model": "synthetic", "layer": "blocks.0", "view": "evee_diff"})
    sd.write_shard(ids, {"diff": a32[:, :, 0] - a32[:, :, 2], "positions": pos})
    split = np.where(np.arange(n) < 100, "train", np.where(np.arange(n) < 120, "val", "test"))
    pd.DataFrame({"variant_id": ids, "label": y.numpy(), "gene": [f"G{i % 9}" for i in range(n)],
                  "split": split}).to_parquet(d / "labels.parquet", index=False)
    return {"dir": d, "ids": ids, "acts": a32, "positions": pos}


def _hand_scores(module, shifted, var_minus):
    """predict() of ``module`` (used with genomic pairing) on hand-made diffs ``var_same - <view>``."""
    from biointerp.probes.training import InMemorySource, predict

    a = shifted["acts"]
    diff = a[:, :, 0] - a[:, :, {"ref_same": 1, "ref_cross": 2}[var_minus]]
    module.pairing = "genomic"
    src = InMemorySource(shifted["ids"], {"diff": diff, "positions": shifted["positions"]})
    return predict(module, src, "diff", shifted["ids"], {"pathogenicity": {"kind": "binary"}})["pathogenicity"]


def test_pairing_option_round_trip(shifted):
    """train --pairing index records it in the card; apply (and evaluate --probe) reuse it and
    reproduce the training-time test scores; the default trains and applies with genomic pairing."""
    from biointerp.probes.artifact import load_probe

    d = shifted["dir"]
    r = _run(["probe", "train", "--help"])
    assert "--pairing [genomic|index]" in r.output and "ref_aligned" in r.output and "ref_same" in r.output
    runs = [("covariance", "index"), ("linear", "index"), ("covariance", None)]
    applied = {}
    for kind, pairing in runs:
        tag = f"{kind}_{pairing or 'default'}"
        r = _run(["probe", "train", "--store", str(d / "acts"), "--labels", str(d / "labels.parquet"),
                  "--split-column", "split", "--kind", kind, "--h", "4", "--p", "8", "--lr", "1e-2", "--epochs", "4",
                  "--n-boot", "0", "--report-dir", str(d / f"rep_{tag}"), "--out", str(d / f"{tag}.safetensors")]
                 + (["--pairing", pairing] if pairing else []))
        want = pairing or "genomic"
        assert f"pairing {want}" in r.output
        card = json.loads(_run(["probe", "show", str(d / f"{tag}.safetensors"), "--json"]).output)["card"]
        assert card["hparams"]["pairing"] == want and card["input"]["pairing"] == want
        assert card["views"] == ["var_same", "ref_same" if want == "index" else "ref_cross"]

        out = d / f"{tag}.h5ad"
        _run(["probe", "apply", "--probe", str(d / f"{tag}.safetensors"), "--store", str(d / "acts"),
              "--out", str(out)])
        a = read_scores(out)
        s = pd.Series(np.asarray(a[:, "pathogenicity"].X).ravel(), index=a.obs_names)
        applied[tag] = s
        # the training-time test predictions (in-memory probe) are reproduced from the file
        test_pred = pd.read_csv(d / f"rep_{tag}" / "test_predictions.tsv", sep="\t", index_col=0)["pathogenicity"]
        assert len(test_pred) == 40
        np.testing.assert_allclose(s[test_pred.index], test_pred, atol=1e-6, rtol=0)
        # ... and equal a hand computation with the recorded pairing, not with the other one
        module, _ = load_probe(d / f"{tag}.safetensors")
        assert module.pairing == want
        own = _hand_scores(module, shifted, "ref_same" if want == "index" else "ref_cross")
        other = _hand_scores(module, shifted, "ref_cross" if want == "index" else "ref_same")
        np.testing.assert_allclose(s[own.index], own, atol=1e-6, rtol=0)
        assert np.abs(s[other.index].to_numpy() - other.to_numpy()).max() > 1e-3

        # evaluate --probe computes its scores with the card's pairing too
        _run(["probe", "evaluate", "--probe", str(d / f"{tag}.safetensors"), "--store", str(d / "acts"),
              "--labels", str(d / "labels.parquet"), "--split-column", "split", "--n-boot", "0",
              "--out", str(d / f"{tag}.json")])
        from biointerp.probes.evaluate import auroc

        lab = pd.read_parquet(d / "labels.parquet").set_index("variant_id")
        t = lab.index[lab["split"] == "test"]
        res = json.loads((d / f"{tag}.json").read_text())["metrics"]
        assert res["auroc"] == pytest.approx(auroc(lab.loc[t, "label"], s[t]), abs=1e-9)

    # fine-tuning keeps the card's pairing
    _run(["probe", "finetune", "--probe", str(d / "covariance_index.safetensors"), "--store", str(d / "acts"),
          "--labels", str(d / "labels.parquet"), "--split-column", "split", "--epochs", "1", "--n-boot", "0",
          "--out", str(d / "ft.safetensors")])
    card = json.loads(_run(["probe", "show", str(d / "ft.safetensors"), "--json"]).output)["card"]
    assert card["hparams"]["pairing"] == "index" and card["views"] == ["var_same", "ref_same"]


def test_pairing_index_needs_acts_store(shifted):
    """--pairing index on an evee_diff store: a clear error (harvest --view evee); an index
    probe applied to a diff tensor: the same error; the default trains on the diff store."""
    d = shifted["dir"]
    common = ["--labels", str(d / "labels.parquet"), "--split-column", "split", "--kind", "covariance", "--h", "4",
              "--p", "8", "--epochs", "1", "--n-boot", "0"]
    r = _run(["probe", "train", "--store", str(d / "diff"), *common, "--pairing", "index",
              "--out", str(d / "x.safetensors")], ok=False)
    assert r.exit_code != 0
    assert "only holds pairing='genomic' diffs" in r.output and "--view evee" in r.output
    assert not (d / "x.safetensors").exists()
    r = _run(["probe", "train", "--store", str(d / "diff"), *common, "--out", str(d / "g.safetensors")])
    card = json.loads(_run(["probe", "show", str(d / "g.safetensors"), "--json"]).output)["card"]
    # a store without a recipe field (written before recipes) is the genomic recipe
    assert card["input"]["pairing"] == "genomic" and card["input"]["recipe"] == "genomic"
    assert card["views"] == ["var_same - ref_aligned (stored diff)"]
    # a genomic probe trained on acts and one trained on the diff store read the same input
    _run(["probe", "train", "--store", str(d / "acts"), *common, "--out", str(d / "ga.safetensors")])
    _run(["probe", "apply", "--probe", str(d / "ga.safetensors"), "--store", str(d / "diff"), "--tensor", "diff",
          "--out", str(d / "ga_diff.h5ad")])
    # an index probe cannot read a diff store
    _run(["probe", "train", "--store", str(d / "acts"), *common, "--pairing", "index",
          "--out", str(d / "i.safetensors")])
    r = _run(["probe", "apply", "--probe", str(d / "i.safetensors"), "--store", str(d / "diff"), "--tensor", "diff",
              "--out", str(d / "i.h5ad")], ok=False)
    assert r.exit_code != 0 and "only holds pairing='genomic' diffs" in r.output
    r = _run(["probe", "evaluate", "--probe", str(d / "i.safetensors"), "--store", str(d / "diff"),
              "--labels", str(d / "labels.parquet"), "--n-boot", "0"], ok=False)
    assert r.exit_code != 0 and "probe and store do not fit together" in r.output  # no acts there
