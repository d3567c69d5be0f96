"""A corpus of deliberately bad inputs: each gives a clear message or a status row, never a traceback."""

from __future__ import annotations

import gzip
import os

import pandas as pd
import pysam
import pytest
from click.testing import CliRunner

from biointerp.cli import main

HEADER = "##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
SEQ = "ACGTACGTAAAAAGGCCTTACGTACCGGTTAACCGGTTAA"  # 40 bp


@pytest.fixture()
def fasta(tmp_path):
    fa = tmp_path / "ref.fa"
    fa.write_text(">chr1\n" + SEQ[:20] + "\n" + SEQ[20:] + "\n")
    return fa


def vcf(tmp_path, *rows, name="v.vcf", header=HEADER):
    p = tmp_path / name
    p.write_text(header + "".join(r + "\n" for r in rows))
    return p


def check(*args, out=None):
    """Run `biointerp variants check`; return (exit code, output, table or None)."""
    argv = ["variants", "check", *map(str, args)]
    if out is not None:
        argv += ["--out", str(out)]
    res = CliRunner().invoke(main, argv)
    # a clean click error or success; never an unexplained exception
    assert res.exception is None or isinstance(res.exception, SystemExit), res.output
    assert "Traceback" not in res.output
    table = pd.read_parquet(out) if out is not None and res.exit_code == 0 else None
    return res.exit_code, res.output, table


def status_of(tmp_path, fasta, *rows):
    code, output, t = check("--fasta", fasta, "--vcf", vcf(tmp_path, *rows), out=tmp_path / "t.parquet")
    assert code == 0, output
    assert len(t) == len(rows)  # nothing dropped
    return t


# ---- errors with a message naming the file (and line) -----------------------

def test_truncated_bgzip_vcf(tmp_path):
    src = vcf(tmp_path, *(f"chr1\t{i}\t.\tA\tG\t.\t.\t." for i in range(1, 2000)))
    pysam.tabix_compress(str(src), str(tmp_path / "v.vcf.gz"))
    data = (tmp_path / "v.vcf.gz").read_bytes()
    (tmp_path / "cut.vcf.gz").write_bytes(data[: len(data) // 2])
    code, out, _ = check("--vcf", tmp_path / "cut.vcf.gz")
    assert code == 1 and "cut.vcf.gz" in out and "truncated" in out


def test_truncated_last_line(tmp_path):
    p = tmp_path / "v.vcf"
    p.write_text(HEADER + "chr1\t5\t.\tA\tG\t.\t.\t.\nchr1\t7\t.\tG")
    code, out, _ = check("--vcf", p)
    assert code == 1 and "v.vcf: line 4" in out and "found 4" in out


def test_wrong_column_count(tmp_path):
    p = vcf(tmp_path, "chr1\t5\t.\tA\tG\t.\t.\t.", "chr1 6 . C T . . .")  # spaces, not tabs
    code, out, _ = check("--vcf", p)
    assert code == 1 and "line 4" in out and "tab-separated" in out


def test_non_integer_position(tmp_path):
    code, out, _ = check("--vcf", vcf(tmp_path, "chr1\tfive\t.\tA\tG\t.\t.\t."))
    assert code == 1 and "line 3" in out and "'five'" in out and "--on-error status" in out


def test_malformed_records_as_status_rows(tmp_path, fasta):
    p = tmp_path / "m.vcf"
    p.write_text(HEADER + "chr1\t5\t.\tA\tG\t.\t.\t.\nchr1 6 . C T . . .\nchr1\tsix\t.\tC\tT\t.\t.\t.\n"
                 "chr1\t5\t.\tA\tG\t.\t.\t.\nchr1\t7\t.\tG")
    code, out, t = check("--fasta", fasta, "--vcf", p, "--on-error", "status", out=tmp_path / "t.parquet")
    assert code == 0, out
    assert t["status"].tolist() == ["ok", "malformed", "malformed", "duplicate", "malformed"]
    assert t["status_detail"].str.contains("line 4").iloc[1] and "'six'" in t["status_detail"].iloc[2]
    assert "truncated" in t["status_detail"].iloc[4] and "malformed               3" in out


def test_empty_vcf_and_empty_fasta(tmp_path, fasta):
    (tmp_path / "e.vcf").write_text("")
    code, out, _ = check("--vcf", tmp_path / "e.vcf")
    assert code == 1 and "e.vcf: empty file" in out
    (tmp_path / "e.fa").write_text("")
    code, out, _ = check("--fasta", tmp_path / "e.fa", "--vcf", vcf(tmp_path, "chr1\t5\t.\tA\tG\t.\t.\t."))
    assert code == 1 and "e.fa: the FASTA file is empty" in out


def test_header_only_vcf_is_zero_records(tmp_path, fasta):
    code, out, t = check("--fasta", fasta, "--vcf", vcf(tmp_path), out=tmp_path / "t.parquet")
    assert code == 0 and "records   0" in out and len(t) == 0


def test_missing_chrom_header(tmp_path):
    p = tmp_path / "nohead.vcf"
    p.write_text("chr1\t5\t.\tA\tG\t.\t.\t.\n")
    code, out, _ = check("--vcf", p)
    assert code == 1 and "nohead.vcf: line 1" in out and "#CHROM" in out


def test_gzip_not_bgzip_fasta(tmp_path, fasta):
    with gzip.open(tmp_path / "ref.fa.gz", "wb") as fh:
        fh.write(fasta.read_bytes())
    code, out, _ = check("--fasta", tmp_path / "ref.fa.gz", "--vcf", vcf(tmp_path, "chr1\t5\t.\tA\tG\t.\t.\t."))
    assert code == 1 and "ref.fa.gz" in out and "bgzip" in out


def test_not_a_fasta_and_missing_files(tmp_path):
    v = vcf(tmp_path, "chr1\t5\t.\tA\tG\t.\t.\t.")
    code, out, _ = check("--fasta", v, "--vcf", v)
    assert code == 1 and "not a FASTA" in out
    code, out, _ = check("--fasta", tmp_path / "nope.fa", "--vcf", v)
    assert code == 1 and "nope.fa" in out and "not found" in out
    code, out, _ = check("--vcf", tmp_path / "nope.vcf")
    assert code == 1 and "nope.vcf" in out and "not found" in out


def test_ragged_fasta_lines(tmp_path):
    fa = tmp_path / "ragged.fa"
    fa.write_text(">chr1\nACGTACGT\nACG\nACGTACGT\nAC\n")
    code, out, _ = check("--fasta", fa, "--vcf", vcf(tmp_path, "chr1\t5\t.\tA\tG\t.\t.\t."))
    assert code == 1 and "ragged.fa" in out and "line" in out


def test_binary_garbage_and_table_without_columns(tmp_path):
    (tmp_path / "bin.vcf").write_bytes(bytes(range(256)) * 4)
    code, out, _ = check("--vcf", tmp_path / "bin.vcf")
    assert code == 1 and "bin.vcf" in out and "UTF-8" in out
    (tmp_path / "t.tsv").write_text("a\tb\n1\t2\n")
    code, out, _ = check("--vcf", tmp_path / "t.tsv")
    assert code == 1 and "t.tsv" in out and "chrom, pos, ref, alt" in out


def test_bad_options(tmp_path, fasta):
    v = vcf(tmp_path, "chr1\t5\t.\tA\tG\t.\t.\t.")
    code, out, _ = check("--fasta", fasta, "--vcf", v, "--region", "chr1:9-3")
    assert code == 2 and "--region" in out
    code, out, _ = check("--fasta", fasta, "--vcf", v, out=tmp_path / "t.xlsx")
    assert code == 2 and "--out" in out


# ---- status rows ------------------------------------------------------------

def test_non_acgtn_alleles(tmp_path, fasta):
    t = status_of(tmp_path, fasta, "chr1\t5\t.\tA\tZ\t.\t.\t.", "chr1\t5\t.\tA\tR\t.\t.\t.",
                  "chr1\t5\t.\tA-\tG\t.\t.\t.", "chr1\t6\t.\tC\t.\t.\t.\t.", "chr1\t6\t.\tC\tC\t.\t.\t.")
    assert t["status"].tolist() == ["invalid_allele"] * 5
    assert "ALT 'Z'" in t["status_detail"].iloc[0] and "ALT equals REF" in t["status_detail"].iloc[4]


def test_symbolic_star_and_breakend(tmp_path, fasta):
    t = status_of(tmp_path, fasta, "chr1\t5\t.\tA\t<DEL>\t.\t.\tSVTYPE=DEL", "chr1\t5\t.\tA\t*\t.\t.\t.",
                  "chr1\t5\t.\tA\tA]chr1:30]\t.\t.\t.", "chr1\t5\t.\tA\t.A\t.\t.\t.")
    assert t["status"].tolist() == ["symbolic_allele"] * 4


def test_duplicates_after_normalisation(tmp_path, fasta):
    # SEQ[8:13] = AAAAA (positions 9..13); deleting one A anywhere is the same variant
    t = status_of(tmp_path, fasta, "chr1\t12\t.\tAA\tA\t.\t.\t.", "chr1\t8\t.\tTA\tT\t.\t.\t.",
                  "chr1\t10\t.\tAAA\tAA\t.\t.\t.", "chr1\t2\t.\tC\tT\t.\t.\t.", "chr1\t2\t.\tC\tT\t.\t.\t.")
    assert t["status"].tolist() == ["ok", "duplicate", "duplicate", "ok", "duplicate"]
    assert t["variant_id"].iloc[0] == "chr1:8:TA:T"


def test_unsorted_vcf(tmp_path, fasta):
    t = status_of(tmp_path, fasta, "chr1\t26\t.\tC\tA\t.\t.\t.", "chr1\t2\t.\tC\tA\t.\t.\t.",
                  "chr1\t17\t.\tC\tA\t.\t.\t.")
    assert t["pos"].tolist() == [26, 2, 17] and (t["status"] == "ok").all()


def test_unknown_contig_position_zero_beyond_end_huge_indel(tmp_path, fasta):
    big = "A" + "C" * 5000
    t = status_of(tmp_path, fasta, "chr2\t5\t.\tA\tG\t.\t.\t.", "chr1\t0\t.\tA\tG\t.\t.\t.",
                  "chr1\t41\t.\tA\tG\t.\t.\t.", "chr1\t39\t.\tAAA\tA\t.\t.\t.", f"chr1\t1\t.\tA\t{big}\t.\t.\t.")
    assert t["status"].tolist() == ["unknown_contig", "out_of_bounds", "out_of_bounds", "out_of_bounds", "too_long"]
    assert "chr2" in t["status_detail"].iloc[0] and "5001" in t["status_detail"].iloc[4]


def test_ref_mismatch_row(tmp_path, fasta):
    t = status_of(tmp_path, fasta, "chr1\t1\t.\tG\tT\t.\t.\t.", "chr1\t1\t.\tACGA\tA\t.\t.\t.")
    assert t["status"].tolist() == ["ref_mismatch", "ref_mismatch"]
    assert "reference has A" in t["status_detail"].iloc[0]


def test_lowercase_fasta_crlf_and_missing_fai(tmp_path):
    fa = tmp_path / "low.fa"
    with open(fa, "w", newline="") as fh:  # Windows line endings, soft-masked lower case
        fh.write(">chr1 desc\r\n" + SEQ[:20].lower() + "\r\n" + SEQ[20:].lower() + "\r\n")
    assert not os.path.exists(str(fa) + ".fai")
    t = status_of(tmp_path, fa, "chr1\t21\t.\tC\tA\t.\t.\t.", "1\t40\t.\tA\tG\t.\t.\t.", "chr1\t21\t.\tA\tC\t.\t.\t.")
    assert t["status"].tolist() == ["ok", "ok", "ref_mismatch"]
    assert os.path.exists(str(fa) + ".fai")
