"""Harvest: the genomic recipe equals its plain version, view semantics, poolings, CLI, kill -9 resume.

(The evee recipe against an independent plain EVEE: tests/test_harvest_evee.py.)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pysam
import pytest
import torch
from click.testing import CliRunner

from biointerp.cli import main
from biointerp.genome import Genome, variant_sequences
from biointerp.harvest import evee_bytes_per_variant, genomic_reference, harvest, pool, run_full
from biointerp.models import StripedHyenaModel, random_model, save_model, tiny_config
from biointerp.store import ActivationStore

KW = dict(upstream=96, downstream=48, K=20, fixed=6)
LAYER = "blocks.5"


@pytest.fixture(scope="module")
def model():
    return StripedHyenaModel(random_model(tiny_config(hidden_size=16, num_layers=8, num_attention_heads=2), seed=11))


@pytest.fixture(scope="module")
def genome(brca1_fasta):
    return Genome(brca1_fasta)


def _variants(genome: Genome) -> pd.DataFrame:
    p = 41245003
    s = genome.fetch("chr17", p, p + 20)
    other = {b: next(c for c in "ACGT" if c != b) for b in "ACGT"}
    third = {b: next(c for c in "TGCA" if c not in (b, other[b])) for b in "ACGT"}
    rows = [("chr17", p, s[0], other[s[0]]), ("chr17", p, s[0], third[s[0]]),
            ("chr17", p + 9, s[9], s[9] + "GAT"), ("chr17", p + 12, s[12:15], s[12]),
            ("chr17", p + 16, other[s[16]], s[16])]
    df = pd.DataFrame(rows, columns=["chrom", "pos", "ref", "alt"])
    df["variant_id"] = df.chrom + ":" + df.pos.astype(str) + ":" + df.ref + ":" + df.alt
    df["status"] = "ok"
    return df


def test_genomic_recipe_equals_plain_passes(model, genome, tmp_path):
    v = _variants(genome)
    ids, base = genomic_reference(model, genome, v, LAYER, **KW)
    st = harvest(model, genome, v, LAYER, view="evee", recipe="genomic", store=tmp_path / "s", storage_dtype=torch.float32,
                 shard_size=2, chunk_rows=3, progress=False, **KW)
    assert st.index["variant_id"].tolist() == v["variant_id"].tolist()  # every row, incl. the mismatch
    assert st.index["status"].tolist()[-1] == "ref_mismatch"
    got_ids, got = st.read()
    assert got_ids == ids and len(ids) == 4
    assert torch.equal(got["positions"], base["positions"])
    for k in ("acts", "mean", "loss_diff"):
        torch.testing.assert_close(got[k], base[k], atol=1e-4, rtol=1e-4)
    assert got["acts"].shape == (4, 2, 3, 20, 16) and got["mean"].shape == (4, 2, 3, 16)
    assert st.verify() == []
    # fp16 store (the default) stays close to the fp32 numbers
    st16 = harvest(model, genome, v, LAYER, view="evee", recipe="genomic", store=tmp_path / "s16", progress=False, **KW)
    acts16 = st16.read(["acts"])[1]["acts"]
    assert acts16.dtype == torch.float16
    torch.testing.assert_close(acts16.float(), base["acts"], atol=2e-2, rtol=1e-2)
    # the smaller option: var - ref_cross only
    sd = harvest(model, genome, v, LAYER, view="evee_diff", recipe="genomic", store=tmp_path / "d", storage_dtype=torch.float32,
                 progress=False, **KW)
    diff = sd.read(["diff"])[1]["diff"]
    torch.testing.assert_close(diff, base["acts"][:, :, 0] - base["acts"][:, :, 2], atol=1e-4, rtol=1e-4)
    assert evee_bytes_per_variant(4096, 256) == pytest.approx(12.6e6, rel=0.01)
    assert evee_bytes_per_variant(4096, 256, "evee_diff") < 0.34 * evee_bytes_per_variant(4096, 256)


def test_genomic_recipe_view_semantics(model, genome, tmp_path):
    v = _variants(genome)
    st = harvest(model, genome, v, LAYER, view="evee", recipe="genomic", store=tmp_path / "s",
                 storage_dtype=torch.float32, progress=False, **KW)
    assert st.manifest["views"] == ["var_same", "ref_same", "ref_aligned"] and st.manifest["recipe"] == "genomic"
    ids, t = st.read()
    pos0 = v["pos"].to_numpy() - 1  # 0-based genomic
    for i, vid in enumerate(ids):
        r = v.set_index("variant_id").loc[vid]
        p0 = r.pos - 1
        fwd, rev = t["positions"][i]
        # fwd: the fixed window is the bases right after the ref allele, then downstream only
        assert fwd[:6].tolist() == list(range(p0 + len(r.ref), p0 + len(r.ref) + 6))
        assert (fwd[fwd >= 0] >= p0 + len(r.ref)).all() and (fwd.diff() > 0).all()
        assert (rev[rev >= 0] < p0).all() and (rev[rev >= 0].diff() < 0).all()
        acts = t["acts"][i]
        if len(r.ref) == len(r.alt):  # SNV: same sequence index == same genomic position
            torch.testing.assert_close(acts[:, 1], acts[:, 2])
        else:  # indel: downstream of it, ref_same and ref_cross part ways
            assert (acts[0, 1] - acts[0, 2]).abs().max() > 1e-3
        torch.testing.assert_close(acts[:, 1][1], acts[:, 2][1])  # upstream (rev) always agree
    assert pos0.min() > 0
    # var_same / ref_cross checked by hand for the insertion
    r = v.iloc[2]
    vw = variant_sequences(genome, r.chrom, r.pos, r.ref, r.alt, 96, 48)
    va, _ = run_full(model, vw.alt_seq, [LAYER])
    ra, _ = run_full(model, vw.ref_seq, [LAYER])
    i = ids.index(r.variant_id)
    k = int((t["positions"][i, 0] >= 0).sum())
    off = t["positions"][i, 0, :k] - (vw.start - 1)  # reference index of each selected base
    shift = len(r.alt) - len(r.ref)
    torch.testing.assert_close(t["acts"][i, 0, 0, :k], va[LAYER][off + shift], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(t["acts"][i, 0, 2, :k], ra[LAYER][off], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(t["acts"][i, 0, 1, :k], ra[LAYER][off + shift], atol=1e-4, rtol=1e-4)
    # K larger than what the window holds: padding with -1
    st2 = harvest(model, genome, v.iloc[:1], LAYER, view="evee", recipe="genomic", store=tmp_path / "pad", upstream=20,
                  downstream=10, K=32, fixed=4, progress=False)
    p = st2.read(["positions"])[1]["positions"][0]
    assert (p[0] == -1).sum() == 32 - 9 and (p[1] == -1).sum() == 32 - 20


def test_poolings_many_layers(model, genome, tmp_path):
    v = _variants(genome).iloc[:3]
    layers = ["blocks.2", "blocks.7"]
    for view in ("variant", "window_mean", "mean"):
        st = harvest(model, genome, v, layers, view=view, store=tmp_path / view, upstream=64, downstream=32,
                     pool_window=5, storage_dtype=torch.float32, progress=False)
        ids, t = st.read()
        r = v.iloc[2]
        vw = variant_sequences(genome, r.chrom, r.pos, r.ref, r.alt, 64, 32)
        acts, _ = run_full(model, vw.alt_seq, layers)
        for lay in layers:
            want = pool(acts[lay], view, vw.offset, len(r.alt), 5)
            torch.testing.assert_close(t[f"emb.{lay}.{view}"][2], want, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="unknown layer"):
        harvest(model, genome, v, "blocks.99", view="mean", store=tmp_path / "x", progress=False)
    with pytest.raises(ValueError, match="exactly one layer"):
        harvest(model, genome, v, layers, view="evee", store=tmp_path / "y", progress=False)


def test_batched_poolings_equal_prefix_reuse(model, genome, tmp_path):
    """Without prefix reuse the poolings run a block's windows in padded batches of full passes
    (stopping at the deepest layer): every row, ok or not, equals the prefix-reuse harvest."""
    v = _variants(genome)  # SNVs sharing a window, an insertion, a deletion, a ref mismatch
    layers = ["blocks.2", "blocks.5"]
    kw = dict(view="window_mean", upstream=64, downstream=32, pool_window=5, storage_dtype=torch.float32,
              progress=False, shard_size=2)
    ids_a, a = harvest(model, genome, v, layers, store=tmp_path / "reuse", reuse_prefix=True, **kw).read()
    st = harvest(model, genome, v, layers, store=tmp_path / "batched", reuse_prefix=False, batch_size=3, **kw)
    ids_b, b = st.read()
    assert list(ids_a) == list(ids_b) == v["variant_id"].tolist()[:4]  # read(): the ok rows
    assert st.index["variant_id"].tolist() == v["variant_id"].tolist()
    assert st.index["status"].tolist() == ["ok"] * 4 + ["ref_mismatch"]
    for k in a:
        torch.testing.assert_close(b[k], a[k], atol=1e-5, rtol=1e-5)
        assert b[k].abs().sum(-1).min() > 0  # real activations, not the empty row


def _vcf(clinvar_vcf, path, n):
    t = pysam.TabixFile(str(clinvar_vcf), encoding="utf-8")
    lines = list(t.fetch("17", 41245000, 41247000))[:n]
    path.write_text("\n".join(list(t.header) + lines) + "\n")


HARVEST_ARGS = ["--layer", "blocks.6", "--view", "evee", "--upstream", "768", "--downstream", "256", "-K", "16",
                "--fixed", "4", "--shard-size", "2", "--device", "cpu"]


def test_cli_harvest_kill9_resume_identical(tmp_path, brca1_fasta, clinvar_vcf):
    vcf = tmp_path / "v.vcf"
    _vcf(clinvar_vcf, vcf, 24)
    save_model(random_model(tiny_config(hidden_size=16, num_layers=8, num_attention_heads=2), seed=5),
               tmp_path / "model", card={"name": "tiny16"})
    base = [sys.executable, "-m", "biointerp", "harvest", "--model", str(tmp_path / "model"), "--fasta",
            str(brca1_fasta), "--variants", str(vcf), *HARVEST_ARGS]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    full = subprocess.run([*base, "--store", str(tmp_path / "full")], capture_output=True, text=True, timeout=120, env=env)
    assert full.returncode == 0, full.stderr[-2000:]
    proc = subprocess.Popen([*base, "--store", str(tmp_path / "crash")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env)
    idx = tmp_path / "crash" / "index.parquet"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        try:
            if idx.exists() and len(pd.read_parquet(idx)) >= 4:
                break
        except Exception:  # being replaced right now
            pass
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    n_before = len(pd.read_parquet(idx))
    assert 0 < n_before < 24, "the kill must land halfway"
    again = subprocess.run([*base, "--store", str(tmp_path / "crash")], capture_output=True, text=True, timeout=120, env=env)
    assert again.returncode == 0, again.stderr[-2000:]
    a, b = ActivationStore.open(tmp_path / "full"), ActivationStore.open(tmp_path / "crash")
    assert a.index.equals(b.index) and len(a) == 24 and a.index["variant_id"].is_unique
    for p in sorted((tmp_path / "full").glob("shard-*.safetensors")):
        assert p.read_bytes() == (tmp_path / "crash" / p.name).read_bytes()
    assert sorted(x.name for x in (tmp_path / "crash").iterdir()) == sorted(x.name for x in (tmp_path / "full").iterdir())
    runner = CliRunner()
    res = runner.invoke(main, ["store", "verify", str(tmp_path / "crash")])
    assert res.exit_code == 0, res.output
    res = runner.invoke(main, ["store", "info", str(tmp_path / "crash")])
    assert res.exit_code == 0 and "per stored variant" in res.output
    shard = (tmp_path / "crash" / "shard-00000.safetensors")
    shard.write_bytes(shard.read_bytes()[:-4] + b"\0\0\0\0")
    res = runner.invoke(main, ["store", "verify", str(tmp_path / "crash")])
    assert res.exit_code != 0 and "checksum" in res.output


def test_cli_harvest_pooled_table(tmp_path, brca1_fasta, clinvar_vcf):
    from biointerp.tables import read_scores

    vcf = tmp_path / "v.vcf"
    _vcf(clinvar_vcf, vcf, 4)
    save_model(random_model(tiny_config(hidden_size=16, num_layers=8, num_attention_heads=2), seed=5),
               tmp_path / "model", card={"name": "tiny16"})
    runner = CliRunner()
    args = ["harvest", "--model", str(tmp_path / "model"), "--fasta", str(brca1_fasta), "--variants", str(vcf),
            "--layer", "blocks.3", "--layer", "blocks.7", "--view", "window_mean", "--upstream", "64",
            "--downstream", "64", "--store", str(tmp_path / "s"), "--out", str(tmp_path / "emb.h5ad")]
    res = runner.invoke(main, args)
    assert res.exit_code == 0, res.output
    a = read_scores(tmp_path / "emb.h5ad")
    assert a.n_obs == 4 and a.obsm["X_tiny16_blocks.7_window_mean"].shape == (4, 16)
    res = runner.invoke(main, args[:-6] + ["--layer", "blocks.99", "--store", str(tmp_path / "t")])
    assert res.exit_code != 0 and "blocks.99" in res.output


def test_divergence_resolves_nearly_parallel_rows():
    """The EVEE selection score 1 − cos stays accurate (vs float64) for nearly parallel
    activations, where fp32 cosine similarity rounds to a few steps below 1 and ties
    positions that differ: ranks follow the float64 ones."""
    from biointerp.harvest import divergence

    g = torch.Generator().manual_seed(0)
    r = torch.randn(64, 256, generator=g) * 20
    u = torch.randn(64, 256, generator=g)
    u = u - (u * r).sum(-1, keepdim=True) / (r * r).sum(-1, keepdim=True) * r  # orthogonal to r
    scale = torch.linspace(0.0290, 0.0300, 64)[:, None]  # 1 − cos from ~4.2e-4 to ~4.5e-4, close together
    v = r + scale * u / u.norm(dim=-1, keepdim=True) * r.norm(dim=-1, keepdim=True)
    exact = 1 - (v.double() * r.double()).sum(-1) / (v.double().norm(dim=-1) * r.double().norm(dim=-1))
    got = divergence(v, r).double()
    assert ((got - exact).abs() / exact).max() < 1e-4
    assert torch.equal(torch.argsort(-got), torch.argsort(-exact))
    cos32 = (1 - torch.nn.functional.cosine_similarity(v, r, dim=-1)).double()
    assert ((cos32 - exact).abs() / exact).max() > 1e-4  # the plain fp32 cosine cannot resolve these
