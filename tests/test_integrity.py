"""Damaged artifacts: a generated corpus of broken stores and probe files, driven through the CLI.

Every case must end in exactly one ``Error:`` line, exit code 1, no traceback and no
output table (no silently wrong score). The probe cases whose damage keeps the file
well-formed are "re-sealed" (the card's tensor hash and layout rewritten to match), so
that the dtype / shape / finite checks, not the checksum, must catch them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors import safe_open
from safetensors.torch import save_file

from biointerp.cli import main
from biointerp.probes.artifact import CARD_KEY, load_probe, save_probe, tensor_layout, tensors_sha256
from biointerp.probes.covariance import CovarianceProbe
from biointerp.store import ActivationStore, StoreError, shard_name
from biointerp.tables import read_scores

N, K, D = 24, 4, 8


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """An evee_diff-layout store (3 shards of 8) and a covariance probe that fits it."""
    d = tmp_path_factory.mktemp("pristine")
    g = torch.Generator().manual_seed(0)
    ids = [f"chr1:{100 + i}:A:G" for i in range(N)]
    st = ActivationStore.create(d / "store", {"model": "synthetic", "layer": "blocks.0", "K": K, "d": D,
                                              "view": "evee_diff"})
    diff = torch.randn(N, 2, K, D, generator=g).half()
    pos = torch.arange(K).expand(N, 2, K).clone()
    for s in range(0, N, 8):
        st.write_shard(ids[s:s + 8], {"diff": diff[s:s + 8], "positions": pos[s:s + 8]})
    torch.manual_seed(0)
    m = CovarianceProbe(D, 4, 4)
    for p in m.parameters():
        torch.nn.init.normal_(p, std=0.5)
    save_probe(d / "probe.safetensors", m, {"input": {"tensor": "diff", "pair": False},
                                            "heads": {"pathogenicity": {"kind": "binary"}}})
    return d


@pytest.fixture()
def work(pristine, tmp_path):
    shutil.copytree(pristine / "store", tmp_path / "store")
    shutil.copy(pristine / "probe.safetensors", tmp_path / "probe.safetensors")
    return tmp_path


# ------------------------------------------------------------------ damage helpers
def _flip(path: Path, where: str = "data") -> None:
    """Flip one byte in the tensor data (the middle of it) or in the JSON header."""
    b = bytearray(path.read_bytes())
    start = 8 + int.from_bytes(b[:8], "little")
    i = (start + len(b)) // 2 if where == "data" else 8 + (start - 8) // 2
    b[i] ^= 0x5A
    path.write_bytes(bytes(b))


def _truncate(path: Path, keep: float = 0.6) -> None:
    b = path.read_bytes()
    path.write_bytes(b[:int(len(b) * keep)])


def _read_st(path: Path) -> tuple[dict, dict]:
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})


def _reseal(path: Path, change, card_change=None, seal: bool = True) -> None:
    """Rewrite the probe's tensors with ``change(tensors)`` and a card whose hash/layout match them."""
    sd, meta = _read_st(path)
    sd = change(dict(sd))
    card = json.loads(meta[CARD_KEY])
    if seal:
        card["tensors"], card["tensors_sha256"] = tensor_layout(sd), tensors_sha256(sd)
    else:  # a card written before checksums existed
        card.pop("tensors", None), card.pop("tensors_sha256", None)
    if card_change:
        card = card_change(card)
    save_file(sd, str(path), metadata={CARD_KEY: json.dumps(card)})


def _set_card(path: Path, text: str) -> None:
    sd, _ = _read_st(path)
    save_file(sd, str(path), metadata={CARD_KEY: text})


def _put(sd, name, value):
    sd[name] = value
    return sd


def _nan(sd):
    w = sd["proj_left_fwd.weight"].clone()
    w[0, 0] = float("nan")
    return _put(sd, "proj_left_fwd.weight", w)


def _inf(sd):
    w = sd["out.weight"].clone()
    w[1, 2] = float("inf")
    return _put(sd, "out.weight", w)


def _int32(sd):
    return {k: (v * 3).round().to(torch.int32) for k, v in sd.items()}


def _transpose(sd):
    return _put(sd, "proj_left_fwd.weight", sd["proj_left_fwd.weight"].t().contiguous())


def _drop(sd):
    sd.pop("head_right.weight")
    return sd


def _damage_index_schema(p: Path) -> None:
    import pandas as pd

    pd.read_parquet(p).drop(columns=["checksum"]).to_parquet(p, index=False)


STORE, PROBE, S = "store", "probe.safetensors", "store/" + shard_name(1)

#: (case, damage(workdir), command: "apply" | "info" | "verify" | "show" | "train" | "apply-evee", expected text)
CASES = [
    # --- activation store
    ("shard flipped data byte", lambda w: _flip(w / S), "apply", "shard-00001.safetensors: shard is damaged"),
    ("shard flipped byte, store info", lambda w: _flip(w / "store" / shard_name(0)), "info", "shard is damaged"),
    ("shard flipped byte, store verify", lambda w: _flip(w / S), "verify", "--repair"),
    ("shard flipped header byte", lambda w: _flip(w / S, "header"), "apply", "shard-00001.safetensors"),
    ("shard truncated", lambda w: _truncate(w / S), "apply", "shard is damaged"),
    ("shard empty", lambda w: (w / S).write_bytes(b""), "apply", "shard is damaged"),
    ("shard missing", lambda w: (w / S).unlink(), "apply", "shard listed in the index is missing"),
    ("shard truncated, store info", lambda w: _truncate(w / "store" / shard_name(2)), "info",
     "shard-00002.safetensors: shard is damaged"),
    ("shard missing, store info", lambda w: (w / "store" / shard_name(2)).unlink(), "info", "missing"),
    ("shard damaged, probe train", lambda w: _flip(w / S), "train", "shard-00001.safetensors"),
    ("index.parquet garbage", lambda w: (w / STORE / "index.parquet").write_bytes(b"PAR1 not really" * 9),
     "apply", "index.parquet is damaged"),
    ("index.parquet truncated", lambda w: _truncate(w / STORE / "index.parquet", 0.5), "info",
     "index.parquet is damaged"),
    ("index.parquet missing", lambda w: (w / STORE / "index.parquet").unlink(), "info", "index.parquet is missing"),
    ("index.parquet wrong columns", lambda w: _damage_index_schema(w / STORE / "index.parquet"), "apply",
     "no column(s) ['checksum']"),
    ("manifest.json not JSON", lambda w: (w / STORE / "manifest.json").write_text('{"model": "synth'), "apply",
     "manifest.json is damaged"),
    ("manifest.json a JSON list", lambda w: (w / STORE / "manifest.json").write_text("[1, 2]"), "info",
     "manifest.json is damaged"),
    ("manifest.json empty", lambda w: (w / STORE / "manifest.json").write_text(""), "verify",
     "manifest.json is damaged"),
    # --- probe file
    ("probe weights int32", lambda w: _reseal(w / PROBE, _int32), "apply", "must be floating point"),
    ("probe weights int32, card without checksum", lambda w: _reseal(w / PROBE, _int32, seal=False), "apply",
     "must be floating point"),
    ("probe weights NaN", lambda w: _reseal(w / PROBE, _nan), "apply", "NaN or infinite"),
    ("probe weights inf", lambda w: _reseal(w / PROBE, _inf), "apply", "NaN or infinite"),
    ("probe flipped weight byte", lambda w: _flip(w / PROBE), "apply", "do not match the checksum"),
    ("probe flipped header byte", lambda w: _flip(w / PROBE, "header"), "apply", "probe.safetensors"),
    ("probe truncated", lambda w: _truncate(w / PROBE), "apply", "not a readable safetensors file"),
    ("probe empty", lambda w: (w / PROBE).write_bytes(b""), "apply", "empty file"),
    ("probe bad header length", lambda w: (w / PROBE).write_bytes(b"\xff" * 8 + (w / PROBE).read_bytes()[8:]),
     "apply", "not a readable safetensors file"),
    ("probe not safetensors (a pickle)", lambda w: torch.save({"x": torch.ones(2)}, w / PROBE), "apply",
     "not a readable safetensors file"),
    ("probe wrong tensor shape", lambda w: _reseal(w / PROBE, _transpose), "apply", "has shape [8, 4]"),
    ("probe tensor missing", lambda w: _reseal(w / PROBE, _drop), "apply", "missing ['head_right.weight']"),
    ("probe card a JSON list", lambda w: _set_card(w / PROBE, "[1, 2, 3]"), "apply", "card is a JSON list"),
    ("probe weights NaN, probe show", lambda w: _reseal(w / PROBE, _nan), "show", "NaN or infinite"),
    ("probe card a JSON list, probe show", lambda w: _set_card(w / PROBE, "[1, 2, 3]"), "show",
     "card is a JSON list"),
    ("probe card not JSON", lambda w: _set_card(w / PROBE, '{"kind": "cov'), "apply", "card is not valid JSON"),
    ("probe card unknown kind", lambda w: _reseal(w / PROBE, lambda sd: sd, lambda c: {**c, "kind": "forest"}),
     "apply", "names no known probe"),
    ("probe card hparams wrong d", lambda w: _reseal(w / PROBE, lambda sd: sd,
                                                     lambda c: {**c, "hparams": {**c["hparams"], "d": 6}}),
     "apply", "has shape [4, 8]"),
    ("card-less probe with NaN (--kind covariance)",
     lambda w: save_file(_nan(_read_st(w / PROBE)[0]), str(w / PROBE)), "apply-evee", "NaN or infinite"),
]


def _command(cmd: str, w: Path) -> list[str]:
    out = ["--out", str(w / "scores.h5ad")]
    if cmd == "apply":
        return ["probe", "apply", "--probe", str(w / PROBE), "--store", str(w / STORE), *out]
    if cmd == "apply-evee":
        return ["probe", "apply", "--probe", str(w / PROBE), "--kind", "covariance", "--store", str(w / STORE), *out]
    if cmd == "train":
        ids = ActivationStore.open(w / STORE).index["variant_id"]
        import pandas as pd

        pd.DataFrame({"variant_id": ids, "label": np.arange(len(ids)) % 2,
                      "split": np.where(np.arange(len(ids)) < 16, "train", "test")}).to_parquet(w / "l.parquet")
        return ["probe", "train", "--store", str(w / STORE), "--labels", str(w / "l.parquet"), "--split-column",
                "split", "--epochs", "1", "--n-boot", "10", "--out", str(w / "new.safetensors")]
    if cmd == "show":
        return ["probe", "show", str(w / PROBE)]
    return ["store", cmd, str(w / STORE)]


def test_undamaged_control(work):
    """The pristine artifacts pass every command the corpus uses, with finite scores."""
    runner = CliRunner()
    for cmd in ("apply", "info", "verify", "show"):
        r = runner.invoke(main, _command(cmd, work))
        assert r.exit_code == 0, r.output
    scores = read_scores(work / "scores.h5ad")
    assert scores.n_obs == N and np.isfinite(np.asarray(scores.X)).all()


@pytest.mark.parametrize("case,damage,cmd,expect", CASES, ids=[c[0] for c in CASES])
def test_damaged_artifact_is_one_clear_error(work, case, damage, cmd, expect):
    damage(work)
    r = CliRunner().invoke(main, _command(cmd, work))
    errors = [ln for ln in r.output.splitlines() if ln.startswith("Error:")]
    assert isinstance(r.exception, SystemExit), f"{case}: uncaught {r.exception!r}\n{r.output}"
    assert r.exit_code == 1 and len(errors) == 1, f"{case}:\n{r.output}"
    assert "Traceback" not in r.output
    assert expect in errors[0], f"{case}: {errors[0]}"
    assert not (work / "scores.h5ad").exists() and not (work / "new.safetensors").exists()


def test_corpus_covers_the_issue():
    """At least the 25 damaged-artifact cases of issue #19, stores and probe files alike."""
    assert len(CASES) >= 25
    assert sum(c[2] in ("apply", "info", "verify", "train") and "probe" not in c[0] for c in CASES) >= 15
    assert sum(c[0].startswith(("probe", "card-less")) for c in CASES) >= 15


def test_subprocess_smoke(work):
    """The real entry point: one Error: line on stderr, exit 1, no traceback."""
    _reseal(work / PROBE, _nan)
    r = subprocess.run([sys.executable, "-m", "biointerp", *_command("show", work)], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 1
    assert [ln for ln in r.stderr.splitlines() if ln.startswith("Error:")] == [
        ln for ln in r.stderr.splitlines() if ln.strip()][-1:]
    assert "Traceback" not in r.stderr and "NaN" in r.stderr and not r.stdout


def test_reads_verify_once_per_store_object(work):
    """Readers hash a shard once; damage after that first check is caught by a fresh open."""
    st = ActivationStore.open(work / STORE)
    assert len(st.read(["diff"])[0]) == N
    _flip(work / S)
    st2 = ActivationStore.open(work / STORE)
    with pytest.raises(StoreError, match="shard-00001.safetensors: shard is damaged"):
        st2.read(["diff"])
    # the unverified path (benchmarks only) would hand out the damaged tensors
    ids, _ = ActivationStore.open(work / STORE, verify_reads=False).read(["diff"])
    assert len(ids) == N


def test_probe_card_records_hash_and_layout(work):
    card = load_probe(work / PROBE)[1]
    sd, _ = _read_st(work / PROBE)
    assert card["tensors_sha256"] == tensors_sha256(sd)
    assert card["tensors"]["proj_left_fwd.weight"] == {"dtype": "float32", "shape": [4, 8]}


# ------------------------------------------------------------------ repair
def _files(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


def test_repair_recomputes_exactly_the_damaged_shards(tmp_path, brca1_fasta, clinvar_vcf):
    """Damage shards, repair (harvest --repair; store repair + plain rerun): byte-identical to the undamaged run."""
    import pysam

    from biointerp.models import random_model, save_model, tiny_config

    t = pysam.TabixFile(str(clinvar_vcf), encoding="utf-8")
    lines = list(t.fetch("17", 41245000, 41247000))[:20]
    (tmp_path / "v.vcf").write_text("\n".join(list(t.header) + lines) + "\n")
    save_model(random_model(tiny_config(hidden_size=8, num_layers=3, num_attention_heads=2), seed=5),
               tmp_path / "model", card={"name": "tiny8"})
    base = ["harvest", "--model", str(tmp_path / "model"), "--fasta", str(brca1_fasta), "--variants",
            str(tmp_path / "v.vcf"), "--layer", "blocks.1", "--view", "evee_diff", "--upstream", "128",
            "--downstream", "64", "-K", "8", "--fixed", "2", "--shard-size", "4", "--device", "cpu"]
    runner = CliRunner()
    r = runner.invoke(main, [*base, "--store", str(tmp_path / "full")])
    assert r.exit_code == 0, r.output
    full = ActivationStore.open(tmp_path / "full")
    rows = full.index[full.index["shard"] >= 0].groupby("shard").size()
    # --shard-size 4: shards of exactly 4 rows (all 20 variants are ok), though sites with several
    # alleles straddle shards 2/3 (chr17:41245029 CT>C, CTG>C)
    assert full.index["status"].eq("ok").all() and rows.tolist() == [4] * 5
    split = full.index.set_index("variant_id").loc[["chr17:41245029:CT:C", "chr17:41245029:CTG:C"], "shard"]
    assert split.tolist() == [2, 3]
    want = _files(tmp_path / "full")

    # one step: harvest --repair
    shutil.copytree(tmp_path / "full", tmp_path / "a")
    _flip(tmp_path / "a" / shard_name(2))
    keep = {n: (tmp_path / "a" / n).stat().st_mtime_ns for n in (shard_name(0), shard_name(1), shard_name(3))}
    r = runner.invoke(main, ["probe", "apply", "--probe", "x.safetensors", "--store", str(tmp_path / "a"),
                             "--out", str(tmp_path / "s.h5ad")])
    assert r.exit_code != 0
    r = runner.invoke(main, [*base, "--store", str(tmp_path / "a"), "--repair"])
    assert r.exit_code == 0, r.output
    assert f"1 damaged shard(s) dropped, {rows[2]} variants to recompute" in r.output
    assert _files(tmp_path / "a") == want
    assert all((tmp_path / "a" / n).stat().st_mtime_ns == m for n, m in keep.items())  # others untouched

    # two steps: store repair, then the plain harvest command (a missing and a damaged shard)
    shutil.copytree(tmp_path / "full", tmp_path / "b")
    _flip(tmp_path / "b" / shard_name(1), "header")
    (tmp_path / "b" / shard_name(3)).unlink()
    r = runner.invoke(main, ["store", "verify", str(tmp_path / "b")])
    assert r.exit_code == 1 and "--repair" in r.output
    r = runner.invoke(main, ["store", "repair", str(tmp_path / "b")])
    assert r.exit_code == 0 and f"{rows[1] + rows[3]} variants await recompute" in r.output, r.output
    with pytest.raises(StoreError, match="marked damaged"):
        ActivationStore.open(tmp_path / "b").read()
    r = runner.invoke(main, [*base, "--store", str(tmp_path / "b")])
    assert r.exit_code == 0, r.output
    assert _files(tmp_path / "b") == want
    assert runner.invoke(main, ["store", "verify", str(tmp_path / "b")]).exit_code == 0
