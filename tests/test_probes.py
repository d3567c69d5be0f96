"""Probes: EVEE compatibility, planted signals, sklearn agreement, splits, evaluation, artifacts, training."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import save_file

from biointerp.probes import (CovarianceProbe, InMemorySource, LinearProbe, MultiHeadCovarianceProbe, auprc, auroc,
                              evaluate, fit_linear, load_probe, newton_schulz_sqrt, predict, save_probe,
                              split_by_gene, train_probe)
from biointerp.probes.evaluate import apply_calibration, fit_calibration, reliability_table, stratified
from biointerp.probes.splits import check_no_leak, gene_groups, split_by_chrom, split_from_column


def planted_acts(n: int, K: int = 16, d: int = 16, kind: str = "second", seed: int = 0):
    """EVEE-shaped activations with a label planted in the var-ref diffs.

    ``first``: the mean diff of feature 0 shifts with the label (a linear signal);
    ``second``: features 0 and 1 of the diffs correlate +0.8 (label 1) or -0.8
    (label 0) across positions, with identical means and variances (second order only).
    """
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    ref = torch.randn(n, 2, K, d, generator=g)
    z = torch.randn(n, 2, K, d, generator=g)
    sgn = (2 * y - 1).float()[:, None, None]
    if kind == "second":
        z[..., 1] = 0.8 * sgn * z[..., 0] + 0.6 * z[..., 1]
    else:
        z[..., 0] += 0.3 * sgn
    acts = torch.stack([ref + 0.1 * z, ref, ref], 2).half()
    return acts, y.numpy()


def _split(n, n_train, n_val):
    i = np.arange(n)
    return np.where(i < n_train, "train", np.where(i < n_train + n_val, "val", "test"))


# ------------------------------------------------------------ EVEE formula
def _formula(sd, acts, eps=1e-3, iters=3, ref=2):
    """Direct re-computation of the DESIGN.md covariance-probe formula (``ref``: the view
    subtracted from var_same; 1 = ref_same as in EVEE's unified_diff)."""
    a = acts.double()
    C = 0
    for i, dr in enumerate(("fwd", "bwd")):
        diff = a[:, i, 0] - a[:, i, ref]
        left = diff @ sd[f"proj_left_{dr}.weight"].double().T + sd[f"proj_left_{dr}.bias"].double()
        right = diff @ sd[f"proj_right_{dr}.weight"].double().T + sd[f"proj_right_{dr}.bias"].double()
        C = C + torch.einsum("bkl,bkr->blr", left, right) / diff.shape[1]
    h = C.shape[-1]
    C = C + eps * torch.eye(h, dtype=C.dtype)
    out = []
    for c in C:
        fro = torch.sqrt((c * c).sum())
        Y, Z, I = c / fro, torch.eye(h, dtype=c.dtype), torch.eye(h, dtype=c.dtype)
        for _ in range(iters):
            T = 0.5 * (3 * I - Z @ Y)
            Y, Z = Y @ T, T @ Z
        S = Y * torch.sqrt(fro)
        A, B = sd["head_left.weight"].double(), sd["head_right.weight"].double()
        feat = torch.stack([A[j] @ S @ B[j] for j in range(A.shape[0])])
        out.append(feat @ sd["out.weight"].double().T + sd["out.bias"].double())
    return torch.stack(out)


def _evee_state_dict(d=4096, h=64, p=128, seed=0):
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for dr in ("fwd", "bwd"):
        for side in ("left", "right"):
            sd[f"proj_{side}_{dr}.weight"] = torch.randn(h, d, generator=g) / d ** 0.5
            sd[f"proj_{side}_{dr}.bias"] = torch.randn(h, generator=g) * 0.1
    sd["head_left.weight"] = torch.randn(p, h, generator=g) / h ** 0.5
    sd["head_right.weight"] = torch.randn(p, h, generator=g) / h ** 0.5
    sd["out.weight"] = torch.randn(2, p, generator=g) / p ** 0.5
    sd["out.bias"] = torch.randn(2, generator=g)
    return sd


def test_evee_state_dict_loads_and_forward_matches_formula(tmp_path):
    sd = _evee_state_dict()
    probe = CovarianceProbe(4096, 64, 128, 2)
    probe.load_state_dict({**sd, "_eye": torch.eye(64)}, strict=True)
    acts = torch.randn(3, 2, 3, 8, 4096, generator=torch.Generator().manual_seed(1)).half()
    want = _formula(sd, acts)
    got = probe(acts).double()
    assert torch.allclose(got, want, rtol=1e-3, atol=1e-3), (got - want).abs().max()
    # as a card-less EVEE file, module-style and flat key names: read as EVEE trained it,
    # on var_same - ref_same (utils.unified_diff)
    want = _formula(sd, acts, ref=1)
    save_file(sd, str(tmp_path / "probe.safetensors"))
    flat = {k.replace(".weight", "").replace(".bias", "_bias") if not k.startswith("out") else k.replace(".", "_")
            for k in sd}
    flat_sd = {}
    for k, v in sd.items():
        if k.startswith("out."):
            flat_sd[k.replace(".", "_")] = v
        elif k.endswith(".bias"):
            flat_sd[k[:-5] + "_bias"] = v
        else:
            flat_sd[k[:-7]] = v
    flat_sd["eye"] = torch.eye(64)
    assert len(flat) == len(sd)
    save_file(flat_sd, str(tmp_path / "flat.safetensors"))
    for f in ("probe.safetensors", "flat.safetensors"):
        m, card = load_probe(tmp_path / f, kind="covariance", d_model=4096)
        # EVEE's own file: trained on unified_diff = var_same - ref_same (pairing "index")
        assert card["hparams"] == {"d": 4096, "h": 64, "p": 128, "n_out": 2, "concat": False, "pairing": "index"}
        with torch.no_grad():
            assert torch.allclose(m(acts).double(), want, rtol=1e-3, atol=1e-3)
    with pytest.raises(ValueError, match="d=4096"):
        load_probe(tmp_path / "probe.safetensors", kind="covariance", d_model=1024)
    with pytest.raises(ValueError, match="no biointerp card"):
        load_probe(tmp_path / "probe.safetensors")


def test_newton_schulz_converges_to_matrix_sqrt():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(4, 12, 6, generator=g, dtype=torch.float64)
    C = X.transpose(1, 2) @ X / 12 + 1e-1 * torch.eye(6, dtype=torch.float64)
    S = newton_schulz_sqrt(C, 30)
    assert torch.allclose(S @ S, C, atol=1e-8)
    S3 = newton_schulz_sqrt(C, 3)  # 3 steps: an approximation that is still close
    assert (S3 @ S3 - C).norm() / C.norm() < 0.5


# ---------------------------------------------------------- planted signals
def _fit_and_score(kind, acts, y, **kw):
    n = len(y)
    ids = [f"v{i}" for i in range(n)]
    src = InMemorySource(ids, {"acts": acts})
    labels = pd.DataFrame({"label": y}, index=ids)
    split = pd.Series(_split(n, int(0.6 * n), int(0.15 * n)), index=ids)
    res = train_probe(src, labels, split, kind=kind, hparams={"h": 8, "p": 16}, batch_size=64, lr=1e-2, seed=0, **kw)
    test = [i for i in ids if split[i] == "test"]
    p = predict(res.probe, src, "acts", test, res.heads)
    return auroc(labels.loc[test, "label"], p["pathogenicity"]), res


def test_planted_linear_signal_recovered_by_linear_probe():
    acts, y = planted_acts(500, kind="first", seed=1)
    a, res = _fit_and_score("linear", acts, y)
    assert res.info["method"] == "lbfgs"
    assert a > 0.95


def test_planted_second_order_signal_covariance_not_linear():
    acts, y = planted_acts(500, kind="second", seed=2)
    a_lin, _ = _fit_and_score("linear", acts, y)
    a_cov, res = _fit_and_score("covariance", acts, y, max_epochs=25, patience=5)
    assert a_cov > 0.95, a_cov
    assert a_lin < 0.65, a_lin
    a_cat, res_cat = _fit_and_score("covariance_concat", acts, y, max_epochs=25, patience=5)
    assert res_cat.probe.concat and a_cat > 0.9, a_cat
    assert res.info["method"] == "lightning" and res.info["n_val"] == 75


def test_training_is_deterministic_and_early_stops():
    acts, y = planted_acts(200, kind="first", seed=3)
    _, r1 = _fit_and_score("covariance", acts, y, max_epochs=60, patience=2)
    _, r2 = _fit_and_score("covariance", acts, y, max_epochs=60, patience=2)
    for k, v in r1.probe.state_dict().items():
        assert torch.equal(v, r2.probe.state_dict()[k]), k
    assert r1.info["epochs"] < 60  # early stopping fired
    assert r1.info["best_val_loss"] == min(h["val_loss"] for h in r1.info["history"])


# --------------------------------------------------------- sklearn agreement
def test_linear_probe_matches_sklearn_logistic_regression():
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    n, d = 800, 30
    X = rng.normal(size=(n, d)) * rng.uniform(0.1, 5, size=d) + rng.normal(size=d)
    w = rng.normal(size=d) / rng.uniform(0.1, 5, size=d)
    y = (X @ w + rng.logistic(size=n) * 2 > np.median(X @ w)).astype(int)
    tr, te = slice(0, 500), slice(500, None)
    l2 = 1e-2
    ours = fit_linear(X[tr].astype(np.float32), y[tr], l2=l2)
    with torch.no_grad():
        s_ours = ours(torch.as_tensor(X[te], dtype=torch.float32))[:, 0].numpy()
    mu, sd = X[tr].mean(0), X[tr].std(0)
    sk = LogisticRegression(C=1.0 / (l2 * 500), max_iter=5000, tol=1e-10).fit((X[tr] - mu) / sd, y[tr])
    s_sk = sk.decision_function((X[te] - mu) / sd)
    assert abs(roc_auc_score(y[te], s_ours) - roc_auc_score(y[te], s_sk)) < 0.005
    assert np.allclose(ours.linear.weight.detach().numpy()[0], sk.coef_[0], atol=2e-3)
    # minibatch path reaches nearly the same AUROC
    mb = fit_linear(X[tr].astype(np.float32), y[tr], l2=l2, method="minibatch", epochs=100, lr=3e-2)
    with torch.no_grad():
        s_mb = mb(torch.as_tensor(X[te], dtype=torch.float32))[:, 0].numpy()
    assert abs(roc_auc_score(y[te], s_mb) - roc_auc_score(y[te], s_sk)) < 0.01


# ------------------------------------------------------------------- splits
def test_gene_split_has_no_gene_in_two_splits():
    rng = np.random.default_rng(0)
    genes = [f"G{i}" for i in range(40)]
    t = pd.DataFrame({"gene": rng.choice(genes, 1000), "chrom": "chr1", "pos": rng.integers(1, 5_000_000, 1000)})
    t.loc[:50, "gene"] = None  # no gene: grouped by chrom + Mb bin
    s = split_by_gene(t, test_frac=0.25, val_frac=0.1, seed=1)
    assert set(s) == {"train", "val", "test"}
    assert check_no_leak(gene_groups(t), s) == []
    for a, b in (("train", "test"), ("train", "val"), ("val", "test")):
        assert not set(t.loc[s == a, "gene"].dropna()) & set(t.loc[s == b, "gene"].dropna())
    n_test_genes = t.loc[s == "test", "gene"].dropna().nunique()
    assert 8 <= n_test_genes <= 12
    assert not split_by_gene(t, seed=2).equals(s)  # the seed matters


def test_chrom_and_column_splits():
    t = pd.DataFrame({"chrom": ["chr1", "1", "chr2", "chrX"], "s": ["train", "Validation", "test", None]})
    assert split_by_chrom(t, test_chroms=["1"], val_chroms=["chrX"]).tolist() == ["test", "test", "train", "val"]
    assert split_from_column(t, "s").tolist() == ["train", "val", "test", "train"]
    with pytest.raises(ValueError, match="expected train"):
        split_from_column(pd.DataFrame({"s": ["holdout"]}), "s")


# --------------------------------------------------------------- evaluation
def test_evaluate_matches_sklearn_and_bootstrap_ci():
    from sklearn.metrics import average_precision_score, roc_auc_score

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    s = np.round(rng.normal(size=400) + y, 1)  # ties on purpose
    s_nan = s.copy()
    s_nan[:7] = np.nan
    r = evaluate(y, s_nan, n_boot=1000)
    ok = np.isfinite(s_nan)
    assert r["n_missing"] == 7 and r["n"] == 393
    assert r["auroc"] == pytest.approx(roc_auc_score(y[ok], s[ok]), abs=1e-12)
    assert r["auprc"] == pytest.approx(average_precision_score(y[ok], s[ok]), abs=1e-12)
    lo, hi = r["auroc_ci"]
    assert lo < r["auroc"] < hi and 0.03 < hi - lo < 0.2
    big = evaluate(np.tile(y, 4), np.tile(s, 4), n_boot=300)
    assert big["auroc_ci"][1] - big["auroc_ci"][0] < hi - lo  # more data, narrower CI
    assert evaluate(y, s, n_boot=200, seed=5) == evaluate(y, s, n_boot=200, seed=5)
    labels = np.where(y == 1, "pathogenic", "benign").astype(object)
    labels[:3] = "other"
    assert evaluate(labels, s, n_boot=0)["n"] == 397
    st = stratified(y, s, np.where(np.arange(400) < 200, "missense", "intron"), n_boot=100)
    assert list(st["stratum"]) == ["all", "intron", "missense"] and st["n"].tolist() == [400, 200, 200]


def test_calibration_platt_and_isotonic_improve_reliability():
    rng = np.random.default_rng(1)
    logit = rng.normal(size=4000) * 2
    y = (rng.uniform(size=4000) < 1 / (1 + np.exp(-logit))).astype(int)
    bad = 1 / (1 + np.exp(-(3 * logit + 2)))  # overconfident, shifted
    cal_idx, test_idx = slice(0, 2000), slice(2000, None)
    ece_raw = reliability_table(y[test_idx], bad[test_idx]).attrs["ece"]
    for method in ("platt", "isotonic"):
        cal = fit_calibration(y[cal_idx], bad[cal_idx], method)
        fixed = apply_calibration(cal, bad[test_idx])
        assert reliability_table(y[test_idx], fixed).attrs["ece"] < ece_raw / 2
        assert np.all(np.diff(apply_calibration(cal, np.linspace(0, 1, 50))) >= -1e-12)


# ----------------------------------------------------------------- artifact
def test_artifact_round_trip_with_card(tmp_path):
    acts, y = planted_acts(64, K=4, d=8)
    heads = {"pathogenicity": {"kind": "binary"}, "csq": {"kind": "categorical", "classes": ["a", "b", "c"]},
             "score": {"kind": "continuous", "bins": [0.0, 0.5, 1.0, 1.5]}}
    for m in (LinearProbe(16, 1, "evee_mean_diff"), CovarianceProbe(8, 4, 6, 2, concat=True),
              MultiHeadCovarianceProbe(8, heads, h=4, p=6)):
        torch.nn.init.normal_(next(m.parameters()))
        card = {"model": "demo", "layer": "blocks.2", "metrics": {"test": {"auroc": 0.7}},
                "calibration": {"pathogenicity": {"method": "platt", "a": 1.0, "b": 0.0}}}
        save_probe(tmp_path / "p.safetensors", m, card)
        m2, card2 = load_probe(tmp_path / "p.safetensors")
        assert card2["kind"] == m.kind and card2["model"] == "demo" and card2["hparams"] == m.hparams()
        with torch.no_grad():
            a, b = m.eval()(acts), m2(acts)
        if isinstance(a, dict):
            assert set(a) == set(heads) and all(torch.equal(a[k], b[k]) for k in a)
        else:
            assert torch.equal(a, b)
    assert not list(tmp_path.glob("*.tmp"))


def test_train_from_activation_store_streaming(tmp_path):
    from biointerp.store import ActivationStore

    acts, y = planted_acts(240, K=8, d=8, kind="second", seed=4)
    ids = [f"chr1:{1000 + i}:A:G" for i in range(240)]
    st = ActivationStore.create(tmp_path / "store", {"model": "synthetic", "layer": "blocks.0", "K": 8, "d": 8})
    pos = torch.arange(8).expand(240, 2, 8).clone()
    pos[:, :, -1] = -1  # one padded position per direction
    acts[:, :, :, -1] = 0
    for s in range(0, 240, 60):
        st.write_shard(ids[s:s + 60], {"acts": acts[s:s + 60], "positions": pos[s:s + 60]})
    labels = pd.DataFrame({"label": y, "gene": [f"G{i % 30}" for i in range(240)]}, index=ids)
    split = split_by_gene(labels, 0.25, 0.15, seed=0)
    res = train_probe(tmp_path / "store", labels, split, kind="covariance", hparams={"h": 8, "p": 16},
                      max_epochs=25, batch_size=32, lr=1e-2)
    test = split.index[split == "test"].tolist()
    p = predict(res.probe, tmp_path / "store", "acts", test, res.heads)
    assert auroc(labels.loc[test, "label"], p["pathogenicity"]) > 0.9
    assert auprc(labels.loc[test, "label"], p["pathogenicity"]) > 0.85


def test_multihead_and_add_head_finetune():
    from biointerp.probes.covariance import to_multihead

    acts, y = planted_acts(300, K=8, d=8, kind="second", seed=5)
    n = len(y)
    ids = [f"v{i}" for i in range(n)]
    src = InMemorySource(ids, {"acts": acts})
    diff = (acts[:, 0, 0].float() - acts[:, 0, 2].float())
    cont = (diff[..., 0] * diff[..., 1]).mean(1).numpy() * 100  # continuous second-order target
    cls = np.where(y == 1, "up", "down")
    labels = pd.DataFrame({"label": y, "cls": cls, "cont": cont}, index=ids)
    split = pd.Series(_split(n, 200, 40), index=ids)
    base = train_probe(src, labels, split, kind="covariance", hparams={"h": 8, "p": 16}, max_epochs=15, lr=1e-2)
    mh = to_multihead(base.probe, "pathogenicity")
    with torch.no_grad():
        assert torch.allclose(mh(acts)["pathogenicity"], base.probe(acts))
    edges = np.quantile(cont, np.linspace(0, 1, 9)).tolist()
    mh.add_head("cls", {"kind": "categorical", "classes": ["down", "up"], "column": "cls"})
    mh.add_head("cont", {"kind": "continuous", "bins": edges, "column": "cont"})
    proj_before = mh.proj_left_fwd.weight.detach().clone()
    ft = train_probe(src, labels.assign(pathogenicity=np.nan), split,
                     heads={"pathogenicity": {"kind": "binary"}, **{k: mh.heads[k] for k in ("cls", "cont")}},
                     probe=mh, trainable="heads", max_epochs=15, lr=1e-2)
    assert torch.equal(ft.probe.proj_left_fwd.weight, proj_before)  # backbone frozen
    test = split.index[split == "test"].tolist()
    p = predict(ft.probe, src, "acts", test, ft.heads)
    assert (p["cls"].to_numpy() == (labels.loc[test, "cls"] == "up").to_numpy()).mean() > 0.85
    assert np.corrcoef(p["cont"], labels.loc[test, "cont"])[0, 1] > 0.5


def test_linear_probe_streamed_minibatch_through_lightning():
    acts, y = planted_acts(400, kind="first", seed=6)
    a_exact, _ = _fit_and_score("linear", acts, y)
    a, res = _fit_and_score("linear", acts, y, method="minibatch", max_epochs=60, patience=10)
    assert res.info["method"] == "lightning" and len(res.info["history"]) > 1
    assert a > 0.9 and a >= a_exact - 0.02, (a, a_exact)
