"""Activation store: atomic shards, checksums, streaming reads, resume after kill -9."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from biointerp.store import ActivationStore, StoreError, shard_name

WRITER = r"""
import sys, time, torch
from biointerp.store import ActivationStore
path, n, per_shard, delay = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
store = ActivationStore.open_or_create(path, {"model": "gen", "K": 4, "d": 8})
ids = [f"chr1:{i + 1}:A:C" for i in range(n)]
todo = [v for v in ids if v not in store]
with store.background_writer() as w:
    for s in range(0, len(todo), per_shard):
        chunk = todo[s:s + per_shard]
        acts = torch.stack([torch.randn(2, 4, 8, generator=torch.Generator().manual_seed(ids.index(v))) for v in chunk]).half()
        status = ["ok" if ids.index(v) % 7 != 3 else "ref_mismatch" for v in chunk]
        w.submit(chunk, {"acts": acts, "pos": torch.tensor([ids.index(v) for v in chunk])}, status)
        time.sleep(delay)
"""


def _run_writer(path: Path, n: int, per_shard: int, delay: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(n), str(per_shard), str(delay)])


def _content(path: Path) -> dict:
    man = json.loads((path / "manifest.json").read_text())
    out = {"manifest": man, "index": pd.read_parquet(path / "index.parquet").to_dict("list")}
    for p in sorted(path.glob("shard-*.safetensors")):
        out[p.name] = p.read_bytes()
    return out


def test_write_read_roundtrip(tmp_path):
    store = ActivationStore.create(tmp_path / "s", {"model": "m", "d": 3})
    ids = [f"v{i}" for i in range(10)]
    x = torch.arange(30, dtype=torch.float32).reshape(10, 3)
    status = ["ok"] * 10
    status[4] = "ref_mismatch"
    store.write_shard(ids[:6], {"x": x[:6]}, status[:6], ["", "", "", "", "REF differs", ""])
    store.write_shard(ids[6:], {"x": x[6:]})
    assert store.verify() == []
    re = ActivationStore.open(tmp_path / "s")
    idx = re.index
    assert idx["variant_id"].tolist() == ids  # every input recorded, in order
    assert idx.loc[4, "status"] == "ref_mismatch" and idx.loc[4, "shard"] == -1
    assert idx.loc[5, "row"] == 4 and idx.loc[6, "shard"] == 1
    got_ids, got = [], []
    for b_ids, b in re.iter_batches(["x"], batch_size=4):
        assert len(b_ids) <= 4 and b["x"].shape[0] == len(b_ids)
        got_ids += b_ids
        got.append(b["x"])
    ok = [i for i in range(10) if i != 4]
    assert got_ids == [ids[i] for i in ok]
    assert torch.equal(torch.cat(got), x[ok])
    sub_ids, sub = re.read(["x"], variant_ids=["v9", "v1"])
    assert sub_ids == ["v1", "v9"] and torch.equal(sub["x"], x[[1, 9]])
    with pytest.raises(StoreError):
        re.write_shard(["v3"], {"x": x[:1]})  # never duplicates a variant
    with pytest.raises(StoreError):
        list(re.iter_batches(["x"], 2, variant_ids=["v4"]))  # non-ok variant has no tensors


def test_verify_detects_corruption_and_orphans(tmp_path):
    store = ActivationStore.create(tmp_path / "s", {"model": "m"})
    store.write_shard(["a", "b"], {"x": torch.ones(2, 2)})
    p = tmp_path / "s" / shard_name(0)
    data = bytearray(p.read_bytes())
    data[-1] ^= 0xFF
    p.write_bytes(bytes(data))
    (tmp_path / "s" / shard_name(1)).write_bytes(b"partial")
    problems = ActivationStore.open(tmp_path / "s").verify()
    assert any("checksum" in q for q in problems) and any("not in the index" in q for q in problems)


def test_manifest_mismatch_refuses_resume(tmp_path):
    ActivationStore.create(tmp_path / "s", {"model": "m", "K": 4})
    with pytest.raises(StoreError, match="different settings"):
        ActivationStore.open_or_create(tmp_path / "s", {"model": "m", "K": 8})
    with pytest.raises(StoreError, match="not an activation store"):
        ActivationStore.open(tmp_path / "nothing")


def test_kill9_resume_identical(tmp_path):
    n, per = 40, 4
    full = _run_writer(tmp_path / "full", n, per, 0.0)
    assert full.wait(60) == 0
    proc = _run_writer(tmp_path / "crash", n, per, 0.15)
    deadline = time.time() + 60
    while time.time() < deadline:
        idx_path = tmp_path / "crash" / "index.parquet"
        if idx_path.exists():
            try:
                if pd.read_parquet(idx_path)["shard"].max() >= 3:
                    break
            except Exception:  # index being replaced right now
                pass
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    partial = pd.read_parquet(tmp_path / "crash" / "index.parquet")
    assert 0 < len(partial) < n, "the kill must land halfway"
    resumed = _run_writer(tmp_path / "crash", n, per, 0.0)
    assert resumed.wait(60) == 0
    a, b = _content(tmp_path / "full"), _content(tmp_path / "crash")
    assert a == b
    store = ActivationStore.open(tmp_path / "crash")
    assert store.verify() == []
    assert store.index["variant_id"].is_unique and len(store) == n
