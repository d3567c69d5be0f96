"""Reference access: FASTA (plain or bgzip) through pyfaidx, in genome coordinates.

* Contig aliases make ``chr17``/``17`` and ``chrM``/``MT`` meet.
* Samtools-style region FASTAs (header ``>chr17:41100001-41300000``) are
  addressed in genome coordinates: contig ``chr17``, positions 41,100,001 ..
  41,300,000.
* Sequences come back upper-cased (soft-masked repeats are lower case on disk).
* Windows near an edge are shifted, never padded; the offset is recorded.
* The ``.fai`` index is built when missing: next to the FASTA when that folder
  is writable, otherwise in a cache folder (``$BIOINTERP_CACHE`` or
  ``~/.cache/biointerp``).
"""

from __future__ import annotations

import bisect
import hashlib
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "Genome",
    "GenomeError",
    "Segment",
    "Window",
    "VariantWindow",
    "contig_aliases",
    "reverse_complement",
    "variant_sequences",
]

_REGION_RE = re.compile(r"^(?P<chrom>.+):(?P<start>[0-9][0-9,]*)-(?P<end>[0-9][0-9,]*)$")
_COMPLEMENT = str.maketrans("ACGTNacgtnRYKMSWBDHVrykmswbdhv", "TGCANtgcanYRMKSWVHDByrmkswvhdb")


_MITO = {"M", "MT", "CHRM", "CHRMT"}


class GenomeError(ValueError):
    """A reference FASTA cannot be opened or a request falls outside it.

    ``status`` is the variant-table status the failure maps to
    (``unknown_contig``, ``out_of_bounds``, ``ref_mismatch``), so callers never
    parse the message; failures without a more specific one are ``out_of_bounds``.
    """

    def __init__(self, message: str, status: str = "out_of_bounds") -> None:
        super().__init__(message)
        self.status = status


def contig_aliases(name: str) -> list[str]:
    """Names under which contig ``name`` may appear elsewhere, ``name`` first.

    ``chr17`` <-> ``17``, ``chrM`` <-> ``MT`` <-> ``M`` <-> ``chrMT``.
    """
    out = [name]
    bare = name[3:] if name.lower().startswith("chr") else name
    if bare.upper() in _MITO:
        cands = ["chrM", "MT", "M", "chrMT"]
    else:
        cands = [bare, "chr" + bare]
    for c in cands:
        if c not in out:
            out.append(c)
    return out



def reverse_complement(seq: str) -> str:
    """Reverse complement of ``seq`` (IUPAC aware, case kept)."""
    return seq.translate(_COMPLEMENT)[::-1]


@dataclass(frozen=True)
class Segment:
    """One FASTA record placed on a contig: positions ``first..last`` (1-based, inclusive)."""

    chrom: str
    first: int
    last: int
    key: str  # record name in the FASTA

    def __len__(self) -> int:
        return self.last - self.first + 1


@dataclass(frozen=True)
class Window:
    """A reference window: ``seq[offset]`` is the base at ``pos``."""

    chrom: str
    start: int  # 1-based genome position of seq[0]
    seq: str  # upper case
    offset: int  # 0-based index of pos in seq
    n_count: int  # number of N in seq

    @property
    def end(self) -> int:
        """1-based genome position of the last base."""
        return self.start + len(self.seq) - 1


@dataclass(frozen=True)
class VariantWindow:
    """Reference and variant windows sharing their prefix up to ``offset``.

    ``ref_seq[offset:ref_end] == ref`` and ``alt_seq[offset:alt_end] == alt``.
    """

    chrom: str
    pos: int
    ref: str
    alt: str
    start: int  # 1-based genome position of ref_seq[0] (and alt_seq[0])
    offset: int
    ref_seq: str
    alt_seq: str
    ref_end: int  # offset + len(ref)
    alt_end: int  # offset + len(alt)
    n_count: int  # N in ref_seq


def _cache_root() -> Path:
    return Path(os.environ.get("BIOINTERP_CACHE", Path.home() / ".cache" / "biointerp"))


def _gzip_kind(path: Path) -> str:
    """'plain', 'bgzf' or 'gzip' from the first bytes of ``path``."""
    with open(path, "rb") as fh:
        head = fh.read(18)
    if head[:2] != b"\x1f\x8b":
        return "plain"
    # BGZF: FEXTRA flag set and an extra subfield 'BC' (SAM spec, section 4.1).
    if len(head) >= 14 and head[3] & 4 and head[12:14] == b"BC":
        return "bgzf"
    return "gzip"


def _writable(folder: Path) -> bool:
    """Writable for us *and* not marked read-only (no write bit), which root would ignore."""
    mode = folder.stat().st_mode
    return os.access(folder, os.W_OK) and bool(mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def _index_paths(path: Path, index_dir: str | Path | None, bgzf: bool) -> tuple[str | None, str | None]:
    """Where the .fai (and .gzi) live: beside the FASTA, or in a writable cache."""
    fai = Path(str(path) + ".fai")
    gzi = Path(str(path) + ".gzi")
    have = fai.exists() and fai.stat().st_mtime >= path.stat().st_mtime and (not bgzf or gzi.exists())
    if index_dir is None and (have or _writable(path.parent)):
        return None, None
    if index_dir is None:
        st = path.stat()
        tag = hashlib.sha1(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]
        index_dir = _cache_root() / "fai" / tag
    index_dir = Path(index_dir)
    try:
        index_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise GenomeError(f"{path}: cannot create an index folder {index_dir} ({err}); "
                          "pass index_dir= a writable folder or set BIOINTERP_CACHE") from err
    return str(index_dir / (path.name + ".fai")), (str(index_dir / (path.name + ".gzi")) if bgzf else None)


def _decompressed_copy(path: Path, folder: str | Path | None) -> Path:
    """Plain copy of a gzip FASTA in ``folder`` (default: the cache), made once, atomically."""
    import gzip
    import shutil

    st = path.stat()
    tag = hashlib.sha1(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]
    folder = Path(folder) if folder is not None else _cache_root() / "fasta" / tag
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / (path.name[:-3] if path.name.endswith(".gz") else path.name + ".fa")
    if not out.exists():
        tmp = out.with_name(out.name + f".tmp{os.getpid()}")
        try:
            with gzip.open(path, "rb") as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        except (OSError, EOFError) as err:
            tmp.unlink(missing_ok=True)
            raise GenomeError(f"{path}: cannot decompress ({err}); the file may be truncated") from err
        os.replace(tmp, out)
    return out


def _pyfaidx():
    """pyfaidx, imported where used. When nothing has imported fsspec yet, pyfaidx is imported
    without it: pyfaidx only needs fsspec for ``fsspec.OpenFile`` arguments, which :class:`Genome`
    never passes (it opens paths), and fsspec pulls in asyncio and ssl (~0.1 s of every
    ``variants check``). A later ``import fsspec`` elsewhere works as usual."""
    import sys

    if "pyfaidx" not in sys.modules and "fsspec" not in sys.modules:
        sys.modules["fsspec"] = None  # makes pyfaidx's optional ``import fsspec`` fail
        try:
            import pyfaidx
        finally:
            del sys.modules["fsspec"]
    import pyfaidx

    return pyfaidx


def _build_index_atomically(path: Path, fai: str | None, gzi: str | None) -> None:
    """Build a missing or stale .fai (.gzi) under a temporary name, then rename it into place.

    Parallel jobs (Snakemake) opening the same FASTA never read a half-written index.
    """
    fai_p = Path(fai or str(path) + ".fai")
    gzi_p = Path(gzi or str(path) + ".gzi") if gzi is not None or _gzip_kind(path) == "bgzf" else None
    fresh = fai_p.exists() and fai_p.stat().st_mtime >= path.stat().st_mtime and (gzi_p is None or gzi_p.exists())
    if fresh:
        return
    tag = f".tmp{os.getpid()}"
    tmp_fai = fai_p.with_name(fai_p.name + tag)
    tmp_gzi = gzi_p.with_name(gzi_p.name + tag) if gzi_p is not None else None
    pyfaidx = _pyfaidx()
    try:
        pyfaidx.Faidx(str(path), indexname=str(tmp_fai), gzi_indexname=str(tmp_gzi) if tmp_gzi else None,
                      rebuild=True).close()
        if tmp_gzi is not None and tmp_gzi.exists():
            os.replace(tmp_gzi, gzi_p)
        os.replace(tmp_fai, fai_p)
    finally:
        for t in (tmp_fai, tmp_gzi):
            if t is not None and t.exists():
                t.unlink()


class Genome:
    """A reference genome read through pyfaidx, addressed in genome coordinates.

    Parameters
    ----------
    path
        FASTA file, plain or bgzip-compressed (``bgzip ref.fa``). Plain gzip is
        refused with a message saying how to recompress.
    index_dir
        Folder for the ``.fai``/``.gzi`` index; default: beside the FASTA when
        it exists or the folder is writable, else a cache folder.
    decompress
        Accept a plain-gzip FASTA by decompressing it once into the cache
        (``self.source`` keeps the original path).
    """

    def __init__(self, path: str | Path, index_dir: str | Path | None = None, decompress: bool = False) -> None:
        self.path = Path(path)
        self.source = self.path
        if not self.path.exists():
            raise GenomeError(f"reference FASTA not found: {self.path}")
        if self.path.is_dir():
            raise GenomeError(f"{self.path} is a folder; pass the FASTA file itself")
        if self.path.stat().st_size == 0:
            raise GenomeError(f"{self.path}: the FASTA file is empty")
        kind = _gzip_kind(self.path)
        if kind == "gzip" and decompress:
            self.source = self.path
            self.path, kind = _decompressed_copy(self.path, index_dir), "plain"
        if kind == "gzip":
            raise GenomeError(
                f"{self.path} is gzip-compressed but not bgzip (BGZF), which random access needs. "
                f"Recompress it with bgzip: gunzip {self.path} && bgzip {self.path.with_suffix('')}  "
                f"(or pass decompress=True to Genome to use a decompressed copy in the cache)"
            )
        with open(self.path, "rb") as fh:
            first = fh.read(1) if kind == "plain" else b">"
        if first != b">":
            raise GenomeError(f"{self.path}: not a FASTA file (the first character is {first!r}, expected '>')")
        fai, gzi = _index_paths(self.path, index_dir, kind == "bgzf")
        pyfaidx = _pyfaidx()
        try:
            _build_index_atomically(self.path, fai, gzi)
            self._fa = pyfaidx.Fasta(str(self.path), indexname=fai, gzi_indexname=gzi,
                                     sequence_always_upper=True, as_raw=True, rebuild=True)
        except pyfaidx.UnsupportedCompressionFormat as err:
            raise GenomeError(f"{self.path}: {err}") from err
        except (pyfaidx.FastaIndexingError, ValueError) as err:
            raise GenomeError(f"{self.path}: cannot index this FASTA ({err}). Check that every "
                              "record's lines (except its last) have the same length") from err
        except OSError as err:
            raise GenomeError(f"{self.path}: cannot read or index the FASTA ({err})") from err
        self.index_path = fai or str(self.path) + ".fai"
        self._segments: dict[str, list[Segment]] = {}
        for key, rec in self._fa.faidx.index.items():
            m = _REGION_RE.match(key)
            if m:
                chrom, first = m.group("chrom"), int(m.group("start").replace(",", ""))
            else:
                chrom, first = key, 1
            seg = Segment(chrom, first, first + rec.rlen - 1, key)
            self._segments.setdefault(chrom, []).append(seg)
        for chrom, segs in self._segments.items():
            segs.sort(key=lambda s: s.first)
            for a, b in zip(segs, segs[1:]):
                if b.first <= a.last:
                    raise GenomeError(f"{self.path}: records {a.key} and {b.key} overlap on {chrom}")
        self._alias: dict[str, str] = {}
        for chrom in self._segments:
            for name in contig_aliases(chrom):
                self._alias.setdefault(name, chrom)

    # -- contigs -------------------------------------------------------------
    @property
    def contigs(self) -> list[str]:
        """Contig names as in the reference (region headers give their contig part)."""
        return list(self._segments)

    def segments(self, chrom: str) -> list[Segment]:
        """FASTA records covering ``chrom`` (usually one), sorted by position."""
        name = self._require(chrom)
        return list(self._segments[name])

    def resolve_contig(self, name: str) -> str | None:
        """Reference name for ``name`` (``17`` -> ``chr17`` ...), or ``None`` if absent."""
        if name in self._segments:
            return name
        for alias in contig_aliases(str(name)):
            if alias in self._alias:
                return self._alias[alias]
        return None

    def _require(self, chrom: str) -> str:
        name = self.resolve_contig(chrom)
        if name is None:
            raise GenomeError(f"contig {chrom!r} is not in {self.path} (it has: {', '.join(self.contigs[:10])})",
                              "unknown_contig")
        return name

    def bounds(self, chrom: str) -> tuple[int, int]:
        """``(first, last)`` 1-based inclusive positions the reference holds for ``chrom``."""
        segs = self._segments[self._require(chrom)]
        return segs[0].first, segs[-1].last

    def segment_at(self, chrom: str, start: int, end: int | None = None) -> Segment | None:
        """The record holding ``start..end`` (1-based inclusive) or ``None``."""
        name = self.resolve_contig(chrom)
        if name is None:
            return None
        end = start if end is None else end
        segs = self._segments[name]
        i = bisect.bisect_right([s.first for s in segs], start) - 1
        if i < 0:
            return None
        seg = segs[i]
        return seg if start >= seg.first and end <= seg.last else None

    def contains(self, chrom: str, start: int, end: int | None = None) -> bool:
        """True when ``start..end`` lies inside one record of the reference."""
        return self.segment_at(chrom, start, end) is not None

    # -- sequence ------------------------------------------------------------
    def fetch(self, chrom: str, start: int, end: int) -> str:
        """Upper-case sequence of ``chrom:start-end`` (1-based, inclusive)."""
        if end < start:
            return ""
        seg = self.segment_at(chrom, start, end)
        if seg is None:
            name = self._require(chrom)
            first, last = self.bounds(name)
            raise GenomeError(f"{name}:{start}-{end} is outside the reference {self.path} "
                              f"(it holds {name}:{first}-{last})", "out_of_bounds")
        return self._fetch_seg(seg, start, end)

    def _fetch_seg(self, seg: Segment, start: int, end: int) -> str:
        off = seg.first - 1
        return self._fa.faidx.fetch(seg.key, start - off, end - off)

    def window(self, chrom: str, pos: int, upstream: int, downstream: int) -> Window:
        """Window covering ``[pos-upstream, pos+downstream)`` shifted (not padded) at edges.

        The window is shorter than ``upstream + downstream`` only when the
        record holding ``pos`` is.
        """
        name = self._require(chrom)
        seg = self.segment_at(name, pos)
        if seg is None:
            first, last = self.bounds(name)
            raise GenomeError(f"{name}:{pos} is outside the reference {self.path} (it holds {name}:{first}-{last})",
                              "out_of_bounds")
        length = min(upstream + downstream, len(seg))
        start = pos - upstream
        start = max(seg.first, min(start, seg.last - length + 1))
        seq = self._fetch_seg(seg, start, start + length - 1)
        return Window(name, start, seq, pos - start, seq.count("N"))

    def close(self) -> None:
        self._fa.close()

    def __enter__(self) -> "Genome":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        desc = ", ".join(f"{c}:{s[0].first}-{s[-1].last}" for c, s in list(self._segments.items())[:5])
        return f"Genome({str(self.path)!r}: {desc}{' ...' if len(self._segments) > 5 else ''})"


def variant_sequences(genome: Genome, chrom: str, pos: int, ref: str, alt: str,
                      upstream: int, downstream: int, same_length: bool = True,
                      check_ref: bool = True) -> VariantWindow:
    """Reference and alternate windows around a VCF-style variant.

    The reference window is ``genome.window(chrom, pos, upstream, downstream)``;
    the alternate window replaces ``ref`` by ``alt`` at ``offset``. With
    ``same_length`` the alternate window is cut or extended downstream (from the
    genome) to the reference window's length, when the record allows.
    Raises ``GenomeError`` when the ref allele disagrees with the genome
    (``check_ref``) or does not fit in the window.
    """
    ref, alt = ref.upper(), alt.upper()
    w = genome.window(chrom, pos, upstream, downstream)
    ref_end = w.offset + len(ref)
    if ref_end > len(w.seq):
        raise GenomeError(f"{w.chrom}:{pos}:{ref}:{alt}: the ref allele ({len(ref)} bp) runs past the "
                          f"window end; use a larger downstream than {downstream}", "out_of_bounds")
    if check_ref and w.seq[w.offset:ref_end] != ref:
        raise GenomeError(f"{w.chrom}:{pos}: REF {ref!r} disagrees with the reference "
                          f"({w.seq[w.offset:ref_end]!r})", "ref_mismatch")
    alt_seq = w.seq[: w.offset] + alt + w.seq[ref_end:]
    if same_length:
        n = len(w.seq)
        if len(alt_seq) > n:
            alt_seq = alt_seq[:n]
        elif len(alt_seq) < n:
            seg = genome.segment_at(w.chrom, pos)
            assert seg is not None
            more_end = min(seg.last, w.end + (n - len(alt_seq)))
            alt_seq += genome._fetch_seg(seg, w.end + 1, more_end) if more_end > w.end else ""
    return VariantWindow(w.chrom, pos, ref, alt, w.start, w.offset, w.seq, alt_seq,
                         ref_end, w.offset + len(alt), w.n_count)
