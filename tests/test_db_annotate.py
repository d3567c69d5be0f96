"""``db annotate`` writes the same bytes through its fast path (new INFO text spliced into the
input bytes) as through the field re-join path, on the awkward shapes of a VCF body."""

from __future__ import annotations

import gzip

import numpy as np
import pyarrow.parquet as pq
import pytest

import biointerp.db as vdb
import biointerp.db.annotation as annotate_mod
from biointerp.db.evee import synthetic_evee



@pytest.fixture(scope="module")
def db(tmp_path_factory):
    d = tmp_path_factory.mktemp("ann")
    pq.write_table(synthetic_evee(3000, n_heads=3, seed=7), d / "e.parquet")
    vdb.build([d / "e.parquet"], d / "v.duckdb")
    return d / "v.duckdb"


def _vcf(db, samples: bool) -> tuple[str, list[str]]:
    """Records: in the database (INFO with values, '.', the other ALT), multi-allelic, novel,
    unknown contig; with FORMAT + 2 sample columns when ``samples``."""
    with vdb.open(db) as v:
        rows = v._run("SELECT chrom, pos, ref, alt FROM variants ORDER BY key LIMIT 40", []).rows
    head = ["##fileformat=VCFv4.2", "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO" + ("\tFORMAT\tS1\tS2" if samples else "")]
    tail = "\tGT:DP\t0/1:12\t1/1:7" if samples else ""
    body = []
    for i, (c, p, r, a) in enumerate(rows):
        info = [".", "DP=3;AF=0.5", "X"][i % 3]
        alt = a if i % 5 else a + "," + next(b for b in "ACGT" if b not in (r, a))
        body.append(f"{c.removeprefix('chr') if i % 2 else c}\t{p + (i % 7 == 6)}\trs{i}\t{r}\t{alt}\t50\tPASS\t{info}{tail}")
    body.append(f"chrUn_x\t5\t.\tA\tC\t.\t.\t.{tail}")
    return "\n".join(head) + "\n", body


@pytest.mark.parametrize("samples", [False, True])
def test_fast_path_equals_field_rejoin(db, tmp_path, monkeypatch, samples):
    head, body = _vcf(db, samples)
    vin = tmp_path / "in.vcf"
    vin.write_text(head + "\n".join(body))  # no newline after the last record
    real = annotate_mod._assemble_raw
    spliced = []
    monkeypatch.setattr(annotate_mod, "_assemble_raw", lambda *a: spliced.append(real(*a)) or spliced[-1])
    fast = vdb.annotate(db, vin, tmp_path / "fast.vcf.gz", heads=["score_1"], batch_bytes=700)  # many small blocks
    assert len(spliced) >= 3 and all(x is not None for x in spliced)  # every block took the fast path
    calls = []
    monkeypatch.setattr(annotate_mod, "_assemble_raw", lambda *a: calls.append(1) or None)  # force the re-join
    slow = vdb.annotate(db, vin, tmp_path / "slow.vcf.gz", heads=["score_1"], batch_bytes=700)
    assert calls
    a, b = gzip.open(tmp_path / "fast.vcf.gz").read(), gzip.open(tmp_path / "slow.vcf.gz").read()
    assert a == b
    assert fast["annotated_records"] == slow["annotated_records"] > 10 and fast["records"] == len(body)
    out = [ln.split("\t") for ln in a.decode().splitlines() if not ln.startswith("#")]
    assert len(out) == len(body)
    for src, got in zip(body, out):
        s = src.split("\t")
        assert got[:7] == s[:7] and got[8:] == s[8:]  # only INFO changes
        if "BI_SCORE=" in got[7]:
            assert got[7].startswith("BI_SCORE=") if s[7] == "." else got[7].startswith(s[7] + ";BI_SCORE=")
        else:
            assert got[7] == s[7]


def test_crlf_and_blank_lines_fall_back(db, tmp_path):
    head, body = _vcf(db, False)
    vin = tmp_path / "crlf.vcf"
    vin.write_bytes((head + "\n".join(body) + "\n").replace("\n", "\r\n").encode())
    s = vdb.annotate(db, vin, tmp_path / "crlf.vcf.gz")
    out = gzip.open(tmp_path / "crlf.vcf.gz").read().decode()
    assert "\r" not in out and s["records"] == len(body) and s["annotated_records"] > 10
    lines = [ln for ln in out.splitlines() if not ln.startswith("#")]
    assert [ln.split("\t")[:7] for ln in lines] == [b.split("\t")[:7] for b in body]
    assert np.all([ln.count("\t") == 7 for ln in lines])
