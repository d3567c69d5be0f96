"""Reference access on the real BRCA1 region FASTA and on generated FASTAs."""

from __future__ import annotations

import os
import shutil
import random
import stat

import pysam
import pytest

from biointerp.genome import Genome, GenomeError, reverse_complement, variant_sequences


def _raw_region(path, start_offset: int, n: int) -> str:
    """Read the sequence body of a one-record FASTA without pyfaidx (independent check)."""
    with open(path) as fh:
        fh.readline()
        body = "".join(line.strip() for line in fh)
    return body[start_offset : start_offset + n]


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    monkeypatch.setenv("BIOINTERP_CACHE", str(d))
    return d


def test_region_fasta_genome_coordinates(brca1_fasta, cache):
    g = Genome(brca1_fasta)
    assert g.contigs == ["chr17"]
    assert g.bounds("chr17") == (41_100_001, 41_300_000)
    assert g.resolve_contig("17") == "chr17" and g.resolve_contig("chr17") == "chr17"
    assert g.resolve_contig("13") is None
    # first bases, upper-cased (the file is soft-masked: lower case on disk)
    raw = _raw_region(brca1_fasta, 0, 30)
    assert raw != raw.upper()
    assert g.fetch("17", 41_100_001, 41_100_030) == raw.upper()
    # a position deep inside: genome position p is body index p - 41_100_001
    p = 41_196_312
    assert g.fetch("chr17", p, p + 9) == _raw_region(brca1_fasta, p - 41_100_001, 10).upper()
    with pytest.raises(GenomeError, match="outside"):
        g.fetch("chr17", 41_099_990, 41_100_005)
    with pytest.raises(GenomeError, match="not in"):
        g.fetch("chr13", 1, 10)


def test_readonly_folder_index_goes_to_cache(brca1_fasta, cache, tmp_path):
    # a read-only folder like ../shared/data, made here so the test does not
    # depend on whether somebody left a .fai in the shared folder
    folder = tmp_path / "ro"
    folder.mkdir()
    shutil.copyfile(brca1_fasta, folder / brca1_fasta.name)
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP)
    try:
        before = set(os.listdir(folder))
        g = Genome(folder / brca1_fasta.name)
        assert set(os.listdir(folder)) == before  # nothing written beside the read-only FASTA
        assert str(g.index_path).startswith(str(cache)) and os.path.exists(g.index_path)
        assert g.fetch("17", 41_100_001, 41_100_010) == Genome(brca1_fasta).fetch("chr17", 41_100_001, 41_100_010)
    finally:
        folder.chmod(stat.S_IRWXU)


def test_missing_fai_built_and_custom_index_dir(tmp_path, cache):
    fa = tmp_path / "x.fa"
    fa.write_text(">a\nACGTACGTAC\nGG\n")
    g = Genome(fa)
    assert (tmp_path / "x.fa.fai").exists() and g.fetch("a", 9, 12) == "ACGG"
    ro = tmp_path / "ro"
    ro.mkdir()
    (ro / "y.fa").write_text(">b\nTTTTACGT\n")
    os.chmod(ro, 0o555)
    try:
        g2 = Genome(ro / "y.fa", index_dir=tmp_path / "idx")
        assert g2.fetch("b", 5, 8) == "ACGT"
        assert (tmp_path / "idx" / "y.fa.fai").exists() and not (ro / "y.fa.fai").exists()
        g3 = Genome(ro / "y.fa")  # no index_dir: read-only folder -> cache
        assert str(g3.index_path).startswith(str(cache)) and not (ro / "y.fa.fai").exists()
    finally:
        os.chmod(ro, 0o755)


def test_window_edges_shift_not_pad(brca1_fasta, cache):
    g = Genome(brca1_fasta)
    first, last = g.bounds("chr17")
    mid = g.window("17", 41_200_000, 100, 100)
    assert (mid.start, mid.offset, len(mid.seq)) == (41_199_900, 100, 200)
    assert mid.seq == g.fetch("chr17", 41_199_900, 41_200_099)
    left = g.window("chr17", first + 3, 100, 100)
    assert left.start == first and left.offset == 3 and len(left.seq) == 200
    right = g.window("chr17", last - 2, 100, 100)
    assert right.end == last and len(right.seq) == 200 and right.seq[right.offset] == g.fetch("chr17", last - 2, last - 2)
    big = g.window("chr17", 41_200_000, 300_000, 300_000)  # longer than the record: whole record
    assert len(big.seq) == 200_000 and big.start == first and big.offset == 41_200_000 - first


def test_reverse_complement_and_n_count(tmp_path):
    fa = tmp_path / "n.fa"
    fa.write_text(">c\nacgtNNNNacgt\n")
    g = Genome(fa)
    w = g.window("c", 6, 6, 6)
    assert w.seq == "ACGTNNNNACGT" and w.n_count == 4
    assert reverse_complement("ACGTN") == "NACGT"
    rng = random.Random(0)
    s = "".join(rng.choice("ACGTN") for _ in range(500))
    assert reverse_complement(reverse_complement(s)) == s


def test_variant_sequences_snv_and_indels(brca1_fasta, cache):
    g = Genome(brca1_fasta)
    pos = 41_200_000
    base = g.fetch("chr17", pos, pos)
    alt = "A" if base != "A" else "C"
    vw = variant_sequences(g, "17", pos, base, alt, 50, 50)
    assert vw.ref_seq[vw.offset] == base and vw.alt_seq[vw.offset] == alt
    assert vw.ref_seq[: vw.offset] == vw.alt_seq[: vw.offset]
    assert vw.ref_seq[vw.offset + 1 :] == vw.alt_seq[vw.offset + 1 :]
    two = g.fetch("chr17", pos, pos + 1)
    dele = variant_sequences(g, "chr17", pos, two, two[0], 50, 50)
    assert len(dele.alt_seq) == len(dele.ref_seq) == 100
    assert dele.alt_seq == dele.ref_seq[: dele.offset + 1] + g.fetch("chr17", pos + 2, pos + 50)
    ins = variant_sequences(g, "chr17", pos, base, base + "GG", 50, 50)
    assert ins.alt_seq[ins.offset : ins.alt_end] == base + "GG" and len(ins.alt_seq) == 100
    with pytest.raises(GenomeError, match="disagrees"):
        variant_sequences(g, "chr17", pos, alt, base, 50, 50)


def test_bgzip_fasta_and_plain_gzip_refused(tmp_path, cache):
    fa = tmp_path / "b.fa"
    fa.write_text(">chr1:101-120\nACGTACGTAC\nTTTTTGGGGG\n")
    pysam.tabix_compress(str(fa), str(tmp_path / "b.fa.gz"))
    g = Genome(tmp_path / "b.fa.gz")
    assert g.bounds("1") == (101, 120) and g.fetch("chr1", 110, 112) == "CTT"
    import gzip

    with open(fa, "rb") as src, gzip.open(tmp_path / "plain.fa.gz", "wb") as dst:
        dst.write(src.read())
    with pytest.raises(GenomeError, match="bgzip"):
        Genome(tmp_path / "plain.fa.gz")
    d = Genome(tmp_path / "plain.fa.gz", decompress=True)  # opt-in: decompressed copy in the cache
    assert d.source == tmp_path / "plain.fa.gz" and d.path != d.source
    assert d.fetch("chr1", 110, 112) == "CTT"


def test_several_region_records_of_one_contig(tmp_path):
    fa = tmp_path / "two.fa"
    fa.write_text(">chr2:101-110\nACGTACGTAC\n>chr2:201-210\nTTTTGGGGCC\n>chrM\nGATC\n")
    g = Genome(fa)
    assert g.contigs == ["chr2", "chrM"] and g.bounds("2") == (101, 210)
    assert g.resolve_contig("MT") == "chrM"
    assert [s.key for s in g.segments("chr2")] == ["chr2:101-110", "chr2:201-210"]
    assert g.fetch("chr2", 109, 110) == "AC" and g.fetch("chr2", 201, 204) == "TTTT"
    assert g.contains("chr2", 105, 110) and not g.contains("chr2", 108, 202) and not g.contains("chr2", 150)
    with pytest.raises(GenomeError, match="outside"):
        g.fetch("chr2", 108, 202)
    w = g.window("chr2", 209, 4, 4)
    assert (w.start, w.seq, w.offset) == (203, "TTGGGGCC", 6)
    (tmp_path / "ov.fa").write_text(">chr2:101-110\nACGTACGTAC\n>chr2:105-114\nACGTACGTAC\n")
    with pytest.raises(GenomeError, match="overlap"):
        Genome(tmp_path / "ov.fa")
    from biointerp.variants import read_variants

    (tmp_path / "v.vcf").write_text("#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
                                    "2\t110\t.\tC\tA\t.\t.\t.\n2\t150\t.\tA\tG\t.\t.\t.\n"
                                    "2\t201\t.\tT\tG\t.\t.\t.\nMT\t3\t.\tT\tA\t.\t.\t.\n")
    t = read_variants(tmp_path / "v.vcf", g)
    assert t["status"].tolist() == ["ok", "out_of_bounds", "ok", "ok"]
    assert t["variant_id"].tolist()[3] == "chrM:3:T:A"


def _open_and_fetch(args) -> str:
    path, cache = args
    os.environ["BIOINTERP_CACHE"] = cache
    g = Genome(path)
    return g.fetch("c2", 1_000_000, 1_000_040) + g.fetch("c1", 5, 9)


def test_parallel_first_open_builds_one_good_index(tmp_path, cache):
    """Several processes opening a FASTA without .fai at once (Snakemake jobs) all read it right."""
    from concurrent.futures import ProcessPoolExecutor

    import numpy as np

    rng = np.random.default_rng(3)
    seqs = {c: "".join(np.array(list("ACGT"))[rng.integers(0, 4, 1_200_000)]) for c in ("c1", "c2")}
    fa = tmp_path / "p.fa"
    with open(fa, "w") as fh:
        for c, s in seqs.items():
            fh.write(f">{c}\n" + "\n".join(s[i:i + 60] for i in range(0, len(s), 60)) + "\n")
    want = seqs["c2"][999_999:1_000_040] + seqs["c1"][4:9]
    with ProcessPoolExecutor(4) as ex:
        got = list(ex.map(_open_and_fetch, [(str(fa), str(cache))] * 8))
    assert got == [want] * 8
    assert not list(tmp_path.glob("*.tmp*"))  # no temporary index left behind
