"""Variant input: reading VCF/BCF/TSV/Parquet into one normalised variant table.

Canonical variant id: ``chrom:pos:ref:alt`` with the 1-based VCF position and
the contig name as it appears in the reference (see DESIGN.md).
"""

from __future__ import annotations

import gzip
import re
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from biointerp.genome import contig_aliases  # noqa: F401  (re-exported: aliasing lives next to the reference)
from biointerp.variant_ids import _ID_RE, make_variant_id, parse_variant_id  # noqa: F401  (re-exported)

if TYPE_CHECKING:  # pragma: no cover
    from biointerp.genome import Genome

# ---------------------------------------------------------------------------
# Reading variant tables
# ---------------------------------------------------------------------------

#: Every status a variant row can carry (``ok`` first).
STATUSES: tuple[str, ...] = (
    "ok", "ref_mismatch", "unknown_contig", "out_of_bounds",
    "symbolic_allele", "too_long", "invalid_allele", "duplicate", "malformed",
)

#: Default maximum REF/ALT length; longer alleles get ``too_long``.
MAX_ALLELE_LEN = 1000

#: Leading output columns, in order.
CORE_COLUMNS: tuple[str, ...] = (
    "variant_id", "chrom", "pos", "ref", "alt", "status", "status_detail", "record", "alt_index",
    "input_chrom", "input_pos", "input_ref", "input_alt", "gene", "rsid", "id",
)

_ALLELE_RE = r"^[ACGTN]+$"
_REGION_ARG_RE = re.compile(r"^\s*([^:\s]+)(?::([0-9,]+)(?:-([0-9,]+))?)?\s*$")


class VariantInputError(ValueError):
    """A variant file cannot be read; the message names the file (and line) and what to do."""


def parse_region(text: str) -> tuple[str, int, int]:
    """``chr17:41100001-41300000`` -> ``("chr17", 41100001, 41300000)`` (1-based inclusive).

    ``chr17`` alone means the whole contig; ``chr17:100`` a single position.
    """
    m = _REGION_ARG_RE.match(text or "")
    if not m:
        raise ValueError(f"not a region: {text!r}; expected chrom:start-end, e.g. chr17:41100001-41300000")
    chrom = m.group(1)
    start = int(m.group(2).replace(",", "")) if m.group(2) else 1
    end = int(m.group(3).replace(",", "")) if m.group(3) else (start if m.group(2) else 2**62)
    if start < 1 or end < start:
        raise ValueError(f"bad region {text!r}: need 1 <= start <= end")
    return chrom, start, end


# -- file reading --------------------------------------------------------------

def _open_text(path: Path) -> str:
    """Whole file as text, transparently gunzipping (gzip or bgzip)."""
    with open(path, "rb") as fh:
        data = fh.read()
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (EOFError, zlib.error, gzip.BadGzipFile) as err:
            raise VariantInputError(
                f"{path}: the compressed file is truncated or corrupt ({err}); re-download or "
                "re-create it (bgzip file.vcf)") from err
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise VariantInputError(f"{path}: line {line}: not UTF-8 text ({err.reason}); is this really a "
                                "VCF/TSV file?") from err


def _info_header(header_lines: Sequence[str]) -> dict[str, tuple[str, str]]:
    """INFO ID -> (Number, Type) from ``##INFO=<...>`` lines."""
    out = {}
    for h in header_lines:
        if h.startswith("##INFO=<"):
            d = dict(re.findall(r'(\w+)=("[^"]*"|[^,>]*)', h[8:]))
            if "ID" in d:
                out[d["ID"]] = (d.get("Number", "."), d.get("Type", "String"))
    return out


def _vcf_text_frame(text: str, path: Path, region: tuple[str, int, int] | None,
                    lenient: bool = False) -> tuple[pd.DataFrame, dict]:
    """Parse VCF text into a raw frame (one row per record).

    A malformed record raises :class:`VariantInputError` naming the line, or
    with ``lenient`` becomes a row whose ``malformed`` column says why.
    """
    if not text.strip():
        raise VariantInputError(f"{path}: empty file (no VCF header, no records)")
    lines = text.split("\n")
    header: list[str] = []
    i = 0
    while i < len(lines) and lines[i].startswith("##"):
        header.append(lines[i].rstrip("\r"))
        i += 1
    if i >= len(lines) or not lines[i].startswith("#CHROM"):
        raise VariantInputError(
            f"{path}: line {i + 1}: expected the '#CHROM POS ID REF ALT QUAL FILTER INFO' header line; "
            "this is not a VCF (for a table use .tsv/.csv with chrom, pos, ref, alt columns)")
    ncols = lines[i].rstrip("\r").count("\t") + 1
    if ncols < 8:
        raise VariantInputError(f"{path}: line {i + 1}: the #CHROM header has {ncols} tab-separated "
                                "columns, a VCF needs at least 8 (is it space-separated?)")
    first = i + 1
    chrom, pos, ids, ref, alt, info, lineno, bad = [], [], [], [], [], [], [], []
    rchrom = None
    if region is not None:
        rchrom = set(contig_aliases(region[0]))
    for n, line in enumerate(lines[first:], start=first + 1):
        if not line or line == "\r":
            continue
        parts = line.rstrip("\r").split("\t")
        msg = ""
        if len(parts) != ncols:
            what = "truncated?" if n == len(lines) else "check the separators (tabs) on that line"
            msg = (f"line {n}: expected {ncols} tab-separated columns as in the #CHROM header, "
                   f"found {len(parts)} ({what})")
            if not lenient:
                raise VariantInputError(f"{path}: {msg}")
            parts = (parts + [""] * 8)[:max(8, len(parts))]
        if rchrom is not None and parts[0] not in rchrom:
            continue
        chrom.append(parts[0]); pos.append(parts[1]); ids.append(parts[2])  # noqa: E702
        ref.append(parts[3]); alt.append(parts[4]); info.append(parts[7]); lineno.append(n)  # noqa: E702
        bad.append(msg)
    df = pd.DataFrame({"chrom": chrom, "pos": pos, "id": ids, "ref": ref, "alt": alt, "info": info,
                       "line": np.asarray(lineno, dtype=np.int64)})
    df["pos"] = _int_column(df["pos"], df["line"], path, "POS", lenient=lenient, bad=bad)
    if lenient:
        df["malformed"] = np.asarray(bad, dtype=object)
    return df, _info_header(header)


def _vcf_header_lines(path: Path) -> list[str] | None:
    """Meta lines + the #CHROM line, streamed; None when the file does not look like a VCF."""
    with open(path, "rb") as fh:
        opener = gzip.open if fh.read(2) == b"\x1f\x8b" else open
    out: list[str] = []
    try:
        with opener(path, "rt", encoding="utf-8", newline="") as fh:
            for line in fh:
                out.append(line.rstrip("\r\n"))
                if not line.startswith("##"):
                    break
    except (OSError, EOFError, UnicodeDecodeError, zlib.error):
        return None
    return out if out and out[-1].startswith("#CHROM") else None


def _vcf_arrow_frame(path: Path) -> tuple[pd.DataFrame, dict] | None:
    """Fast path: pyarrow's multithreaded CSV reader (gzip/bgzip aware) for a whole VCF.

    Returns None on anything unusual so that the line-by-line parser can name
    the offending line.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pcsv

    header = _vcf_header_lines(path)
    if header is None:
        return None
    names = header[-1].lstrip("#").split("\t")
    if len(names) < 8 or len(set(names)) != len(names):
        return None
    keep = [names[i] for i in (0, 1, 2, 3, 4, 7)]
    try:
        tb = pcsv.read_csv(
            path,
            read_options=pcsv.ReadOptions(skip_rows=len(header), column_names=names, block_size=8 << 20),
            parse_options=pcsv.ParseOptions(delimiter="\t", quote_char=False, double_quote=False),
            convert_options=pcsv.ConvertOptions(column_types={n: pa.string() for n in names},
                                                include_columns=keep, strings_can_be_null=False),
        )
    except (pa.ArrowInvalid, OSError, EOFError):
        return None
    col = {k: tb.column(c) for k, c in zip(("chrom", "pos", "id", "ref", "alt", "info"), keep)}
    try:
        pos = pc.cast(col["pos"], pa.int64()).to_numpy()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None  # the line parser names the bad line
    n = tb.num_rows
    df = pd.DataFrame({k: col[k].to_numpy() for k in ("chrom", "id", "ref", "alt")})
    df["info"] = pd.arrays.ArrowExtensionArray(col["info"])  # stays in Arrow for INFO look-ups
    df.insert(1, "pos", pos.astype(np.int64))
    df["multi"] = pc.match_substring(col["alt"], ",").to_numpy()
    df["line"] = np.arange(len(header) + 1, len(header) + 1 + n, dtype=np.int64)
    return df, _info_header(header)


def _int_column(s: pd.Series, where: pd.Series, path: Path, name: str, what: str = "line",
                lenient: bool = False, bad: list[str] | None = None) -> pd.Series:
    """Integer positions; a bad one raises naming the line, or (``lenient``) becomes 0 with a
    message appended to ``bad`` (one entry per row)."""
    num = pd.to_numeric(s, errors="coerce")
    badm = (num.isna() | (num != np.floor(num))).to_numpy()
    if badm.any():
        if not lenient:
            k = int(np.flatnonzero(badm)[0])
            raise VariantInputError(f"{path}: {what} {int(where.iloc[k])}: {name} {s.iloc[k]!r} is not an "
                                    "integer position")
        for k in np.flatnonzero(badm):
            if bad is not None and not bad[k]:
                bad[k] = f"{what} {int(where.iloc[k])}: {name} {s.iloc[k]!r} is not an integer position"
        num = num.where(~badm, 0)
    return num.astype(np.int64)


def _read_bcf(path: Path, region: tuple[str, int, int] | None) -> tuple[pd.DataFrame, dict]:
    """BCF (or any pysam-readable variant file) -> VCF text -> raw frame."""
    import pysam

    try:
        vf = pysam.VariantFile(str(path))
    except (ValueError, OSError) as err:
        raise VariantInputError(f"{path}: pysam cannot open it as VCF/BCF ({err})") from err
    with vf:
        body = [str(vf.header).rstrip("\n")]
        try:
            for rec in vf:
                body.append(str(rec).rstrip("\n"))
        except (ValueError, OSError) as err:
            raise VariantInputError(f"{path}: record {len(body)}: unreadable ({err}); the file may be "
                                    "truncated") from err
    return _vcf_text_frame("\n".join(body) + "\n", path, region)


_COLS = {
    "chrom": ("chrom", "#chrom", "chr", "chromosome", "contig", "seqname", "chrom_name"),
    "pos": ("pos", "position", "start", "pos_1based", "bp"),
    "ref": ("ref", "reference", "ref_allele", "reference_allele"),
    "alt": ("alt", "alternate", "alt_allele", "alternate_allele", "alts"),
}


#: Columns of our own tables carried through a re-read (input provenance), stored under ``_RT``.
_ROUND_TRIP = ("record", "alt_index", "input_chrom", "input_pos", "input_ref", "input_alt")
_RT = "__biointerp_in_"


def _read_table(path: Path, region: tuple[str, int, int] | None, lenient: bool = False) -> pd.DataFrame:
    """TSV/CSV/Parquet with chrom/pos/ref/alt (or variant_id) columns -> raw frame."""
    name = path.name.lower()
    try:
        if name.endswith((".parquet", ".pq")):
            df = pd.read_parquet(path)
        else:
            sep = "," if name.endswith((".csv", ".csv.gz")) else "\t"
            df = pd.read_csv(path, sep=sep, keep_default_na=False, na_values=[""],
                             comment=None)
    except pd.errors.EmptyDataError as err:
        raise VariantInputError(f"{path}: empty file (expected a header with chrom, pos, ref, alt)") from err
    except pd.errors.ParserError as err:
        raise VariantInputError(f"{path}: malformed table ({err}); every row needs the header's "
                                "number of columns") from err
    except (OSError, ValueError) as err:
        raise VariantInputError(f"{path}: cannot read the table ({err})") from err
    lower = {str(c).lower(): c for c in df.columns}
    found = {k: next((lower[a] for a in al if a in lower), None) for k, al in _COLS.items()}
    out = pd.DataFrame(index=df.index)
    if all(found.values()):
        for k, c in found.items():
            out[k] = df[c].astype("string").fillna("").astype(str) if k != "pos" else df[c]
        used = set(found.values())
    elif "variant_id" in lower:
        c = lower["variant_id"]
        parsed = []
        for k, text in enumerate(df[c].astype(str)):
            try:
                parsed.append(parse_variant_id(text))
            except ValueError as err:
                raise VariantInputError(f"{path}: row {k + 1}: {err}") from err
        cols = list(zip(*parsed)) if parsed else [[], [], [], []]
        for name_, vals in zip(("chrom", "pos", "ref", "alt"), cols):
            out[name_] = list(vals)
        used = {c}
    else:
        raise VariantInputError(
            f"{path}: no variant columns found (have: {', '.join(map(str, df.columns[:12]))}); "
            "expected chrom, pos, ref, alt columns (or a variant_id column like chr17:43045712:T:C)")
    out["line"] = np.arange(2, len(df) + 2, dtype=np.int64) if not name.endswith((".parquet", ".pq")) \
        else np.arange(1, len(df) + 1, dtype=np.int64)
    out["chrom"] = out["chrom"].astype(str)
    bad = [""] * len(out)
    out["pos"] = _int_column(out["pos"], out["line"], path, "pos",
                             what="row" if name.endswith((".parquet", ".pq")) else "line", lenient=lenient, bad=bad)
    if lenient:
        out["malformed"] = np.asarray(bad, dtype=object)
    out["id"] = df[lower["id"]].astype(str) if "id" in lower and lower["id"] not in used else "."
    # a table written by read_variants / `variants check`: re-check it, keep its provenance columns
    own = set(_ROUND_TRIP) | {"variant_id", "status", "status_detail"} <= set(map(str, df.columns))
    for c in df.columns:
        if c in used or str(c).lower() == "id":
            continue
        key = str(c)
        if own and key in _ROUND_TRIP:
            out[_RT + key] = df[c]
        elif own and key in ("variant_id", "status", "status_detail"):
            continue  # re-derived
        elif key in ("gene", "rsid", "label", "consequence", "split") or key not in CORE_COLUMNS + ("line",):
            out[key] = df[c]
        else:
            out["input_" + key] = df[c]
    if region is not None:
        out = out[out["chrom"].isin(contig_aliases(region[0]))]
    return out.reset_index(drop=True)


def _tabix_region(path: Path, region: tuple[str, int, int]) -> str | None:
    """Header + records of ``region`` via the tabix index, or None when there is no index."""
    import pysam

    if not (Path(str(path) + ".tbi").exists() or Path(str(path) + ".csi").exists()):
        return None
    try:
        tbx = pysam.TabixFile(str(path), encoding="utf-8")
    except (OSError, ValueError):
        return None
    with tbx:
        contig = next((a for a in contig_aliases(region[0]) if a in tbx.contigs), None)
        head = "\n".join(tbx.header)
        rows = [] if contig is None else list(tbx.fetch(contig, region[1] - 1, region[2]))
    return head + "\n" + "\n".join(rows) + ("\n" if rows else "")


# -- INFO columns ----------------------------------------------------------------

def _to_arrow_strings(s: pd.Series):
    """A string Series (object or Arrow-backed) as an Arrow array, zero-copy when possible."""
    import pyarrow as pa

    if isinstance(s.dtype, pd.ArrowDtype):
        return pa.array(s.array)
    return pa.array(s.astype(str).to_numpy(dtype=object), type=pa.string())


class _InfoBuffer:
    """INFO strings as one Arrow array + its raw UTF-8 buffer, for fast ``KEY=value`` look-ups.

    Literal substring search (Arrow) finds a key; value ends come from numpy on
    the raw buffer (positions of ';' computed once), so no regex and no
    per-record Python parsing.
    """

    def __init__(self, arr) -> None:
        import pyarrow as pa

        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        if arr.type not in (pa.string(), pa.large_string()):
            arr = arr.cast(pa.string())
        self.arr = arr
        n = len(arr)
        width = np.int64 if arr.type == pa.large_string() else np.int32
        self.offsets = np.frombuffer(arr.buffers()[1], dtype=width)[arr.offset: arr.offset + n + 1].astype(np.int64)
        buf = arr.buffers()[2]
        self.data = np.frombuffer(buf, dtype=np.uint8) if n and buf is not None else np.zeros(0, np.uint8)
        self.semis = np.flatnonzero(self.data == 59)  # ';'
        self._cache: dict[str, np.ndarray] = {}

    def values(self, key: str) -> np.ndarray:
        if key not in self._cache:
            self._cache[key] = self._values(key)
        return self._cache[key].copy()

    def _values(self, key: str) -> np.ndarray:
        import pyarrow as pa
        import pyarrow.compute as pc

        arr, n = self.arr, len(self.arr)
        out = np.full(n, None, dtype=object)
        if n == 0:
            return out
        at0 = pc.starts_with(arr, key + "=").fill_null(False).to_numpy(zero_copy_only=False)
        found = pc.find_substring(arr, ";" + key + "=").fill_null(-1).to_numpy(zero_copy_only=False)
        rel = np.where(at0, 0, np.where(found >= 0, found + 1, -1))
        has = np.flatnonzero(rel >= 0)
        if not len(has):
            return out
        vstart = self.offsets[:-1][has] + rel[has] + len(key) + 1
        k = np.searchsorted(self.semis, vstart)
        if len(self.semis):
            nxt = np.where(k < len(self.semis), self.semis[np.minimum(k, len(self.semis) - 1)], len(self.data))
        else:
            nxt = np.full(len(has), len(self.data))
        vend = np.minimum(nxt, self.offsets[1:][has])
        # gather the value bytes into a new Arrow string array (no per-row Python work)
        lens = vend - vstart
        offs = np.zeros(len(has) + 1, dtype=np.int64)
        np.cumsum(lens, out=offs[1:])
        gather = np.repeat(vstart - offs[:-1], lens) + np.arange(offs[-1], dtype=np.int64)
        data = self.data[gather]
        vals = pa.LargeStringArray.from_buffers(len(has), pa.py_buffer(offs), pa.py_buffer(data.tobytes()))
        out[has] = vals.to_numpy(zero_copy_only=False)
        return out


def _info_column(info: pd.Series, key: str, number: str, vtype: str, alt_index: pd.Series,
                 arr=None) -> pd.Series:
    """Value of INFO ``key`` per (exploded) row; Number=A/R values split per ALT.

    Uses pyarrow's RE2 kernels (vectorised C++), not a Python loop.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if arr is None:
        arr = _InfoBuffer(_to_arrow_strings(info))
    k = re.escape(key)
    if vtype == "Flag":
        return pd.Series(pc.match_substring_regex(arr.arr, rf"(?:^|;){k}(?:;|=|$)").to_numpy(zero_copy_only=False),
                         index=info.index)
    vals = pd.Series(arr.values(key), index=info.index)
    if number in ("A", "R") and vals.notna().any():
        shift = 1 if number == "R" else 0
        parts = vals.str.split(",")
        vals = pd.Series([p[i + shift] if isinstance(p, list) and i + shift < len(p) else None
                          for p, i in zip(parts, alt_index)], index=info.index, dtype=object)
    if vtype in ("Integer", "Float") and number in ("1", "A", "R"):
        return pd.to_numeric(vals, errors="coerce")
    return vals.where(vals.notna(), None)


# -- normalisation ---------------------------------------------------------------

def _trim(pos: int, ref: str, alt: str) -> tuple[int, str, str]:
    """Parsimony without a reference: drop shared suffix, then shared prefix, keeping 1 base."""
    while len(ref) > 1 and len(alt) > 1 and ref[-1] == alt[-1]:
        ref, alt = ref[:-1], alt[:-1]
    while len(ref) > 1 and len(alt) > 1 and ref[0] == alt[0]:
        ref, alt, pos = ref[1:], alt[1:], pos + 1
    return pos, ref, alt


def _left_normalise(pos: int, ref: str, alt: str, base_at: Callable[[int], str | None]) -> tuple[int, str, str]:
    """Left-align and trim a VCF-anchored variant (Tan et al. 2015) against the reference."""
    while True:
        changed = False
        if ref[-1] == alt[-1] and (len(ref) > 1 and len(alt) > 1 or base_at(pos - 1)):
            ref, alt = ref[:-1], alt[:-1]
            changed = True
        if not ref or not alt:
            b = base_at(pos - 1)
            assert b is not None
            ref, alt, pos = b + ref, b + alt, pos - 1
            changed = True
        if not changed:
            break
    while len(ref) > 1 and len(alt) > 1 and ref[0] == alt[0]:
        ref, alt, pos = ref[1:], alt[1:], pos + 1
    return pos, ref, alt


def pc_any_rs(ids: pd.Series) -> bool:
    """True when some ID looks like an rsID (skips a regex pass over ``.`` IDs)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    return bool(len(ids)) and pc.any(pc.match_substring(pa.array(ids.to_numpy(dtype=object), type=pa.string()),
                                                        "rs")).as_py()


def _read_raw(path: Path, region: tuple[str, int, int] | None,
              lenient: bool = False) -> tuple[pd.DataFrame, dict, bool]:
    """Dispatch on the file type; one raw row per input record."""
    name = path.name.lower()
    info_defs: dict = {}
    is_vcf = False
    if name.endswith(".bcf"):
        raw, info_defs = _read_bcf(path, region)
        is_vcf = True
    elif name.endswith((".vcf", ".vcf.gz", ".vcf.bgz", ".vcf.bgzf")):
        text = _tabix_region(path, region) if region is not None else None
        fast = _vcf_arrow_frame(path) if text is None else None
        if fast is not None:
            raw, info_defs = fast
        else:
            raw, info_defs = _vcf_text_frame(text if text is not None else _open_text(path), path, region,
                                             lenient=lenient)
        is_vcf = True
    elif name.endswith((".tsv", ".tsv.gz", ".txt", ".txt.gz", ".csv", ".csv.gz", ".parquet", ".pq")):
        raw = _read_table(path, region, lenient=lenient)
    else:
        raise VariantInputError(f"{path}: unknown variant file type; use .vcf, .vcf.gz, .bcf, .tsv, "
                                ".csv or .parquet")
    return raw, info_defs, is_vcf


# -- main entry point -----------------------------------------------------------

def read_variants(
    path: str | Path,
    genome: "Genome | str | Path | None" = None,
    info_fields: Iterable[str] = (),
    max_allele_len: int = MAX_ALLELE_LEN,
    region: str | tuple[str, int, int] | None = None,
    progress: bool = False,
    on_error: str = "raise",
) -> pd.DataFrame:
    """Read VCF/BCF/TSV/CSV/Parquet into one normalised variant table.

    Parameters
    ----------
    path
        ``.vcf``, ``.vcf.gz`` (gzip or bgzip), ``.bcf``, ``.tsv``/``.txt``/``.csv``
        (optionally ``.gz``) or ``.parquet`` with chrom/pos/ref/alt (or
        ``variant_id``) columns.
    genome
        A :class:`biointerp.genome.Genome` (or a FASTA path). With it contigs are
        renamed to the reference's names, REF is checked, indels are
        left-normalised and bounds are checked. Without it alleles are only
        trimmed and contigs keep their input names.
    info_fields
        INFO keys kept as columns (VCF); Number=A values are split per ALT.
        ``GOLD_STARS`` missing from a record is derived from ``REVIEW_STATUS``.
    max_allele_len
        REF or ALT longer than this gets status ``too_long``.
    region
        ``chrom:start-end`` (1-based inclusive; aliases accepted): keep only
        records whose POS lies inside (tabix index used when present).
    on_error
        ``"raise"``: a malformed record (wrong column count, non-integer POS)
        raises :class:`VariantInputError` naming file and line; ``"status"``:
        it becomes a row with status ``malformed`` instead.

    Returns
    -------
    DataFrame, one row per (record, ALT), in input order, columns
    :data:`CORE_COLUMNS` + requested INFO keys; ``status`` is one of
    :data:`STATUSES` and ``status_detail`` says why. ``record`` is the 1-based
    record number in the input (in ``region`` when one is given).

    Notes
    -----
    MAF-style indels (tables only). In TSV/CSV/Parquet input a ``-`` REF or
    ALT is the empty allele, with MAF coordinates: an insertion
    ``pos, -, TTG`` has ``pos`` = the base *before* the inserted sequence and
    becomes ``pos, B, BTTG``; a deletion ``pos, ACG, -`` has ``pos`` = the
    *first deleted* base and becomes ``pos-1, BACG, B``, where ``B`` is the
    reference base at the new ``pos``. The anchored record is then checked and
    left-normalised like any other (REF not matching -> ``ref_mismatch``), its
    id is built from it, and ``status_detail`` says ``normalised from
    pos:REF:ALT``; the input stays in ``input_pos``/``input_ref``/``input_alt``.
    Anchoring needs ``genome``: without it such rows are ``invalid_allele``; a
    deletion of the first base the reference holds has no base before it and
    is ``out_of_bounds``. Only ``-`` means the empty allele: ``.`` or an empty
    cell stays a missing value (``invalid_allele``). In VCF/BCF ``-`` is not a
    valid allele and stays ``invalid_allele``.
    """
    path = Path(path)
    if not path.exists():
        raise VariantInputError(f"variant file not found: {path}")
    if path.is_dir():
        raise VariantInputError(f"{path} is a folder; pass a VCF/TSV/Parquet file")
    if path.stat().st_size == 0:
        raise VariantInputError(f"{path}: empty file (no header, no records)")
    if on_error not in ("raise", "status"):
        raise ValueError(f"on_error must be 'raise' or 'status', not {on_error!r}")
    if isinstance(region, str):
        region = parse_region(region)
    if genome is not None and not hasattr(genome, "resolve_contig"):
        from biointerp.genome import Genome

        genome = Genome(genome)
    info_fields = list(dict.fromkeys(info_fields))

    try:
        raw, info_defs, is_vcf = _read_raw(path, region, lenient=on_error == "status")
    except OSError as err:
        raise VariantInputError(f"{path}: cannot read ({err})") from err
    if region is not None:
        raw = raw[raw["chrom"].astype(str).isin(contig_aliases(region[0]))
                  & (raw["pos"] >= region[1]) & (raw["pos"] <= region[2])]
    raw = raw.reset_index(drop=True)
    raw["record"] = np.arange(1, len(raw) + 1, dtype=np.int64)
    if _RT + "record" in raw.columns:  # re-reading our own table: keep its record numbers
        raw["record"] = raw.pop(_RT + "record").to_numpy(dtype=np.int64)

    # split multi-allelic records: one row per ALT
    raw["alt"] = raw["alt"].astype(str)
    if "multi" in raw.columns:
        multi = raw.pop("multi").to_numpy(dtype=bool)
    else:
        multi = raw["alt"].str.contains(",", regex=False).to_numpy(dtype=bool)
    if multi.any():
        alts = raw["alt"].str.split(",")
        df = raw.drop(columns=["alt"]).loc[raw.index.repeat(alts.str.len())].reset_index(drop=True)
        df["alt"] = np.concatenate(alts.to_numpy()) if len(alts) else np.array([], dtype=object)
        df["alt_index"] = df.groupby("record").cumcount().astype(np.int64)
    else:
        df = raw
        df["alt_index"] = np.zeros(len(df), dtype=np.int64)

    extra: dict[str, pd.Series] = {}
    if is_vcf:
        import pyarrow as pa

        info = df["info"]
        pinfo = _InfoBuffer(_to_arrow_strings(info))
        for key in info_fields:
            number, vtype = info_defs.get(key, (".", "String"))
            extra[key] = _info_column(info, key, number, vtype, df["alt_index"], arr=pinfo)
        if "GOLD_STARS" in extra:
            missing = extra["GOLD_STARS"].isna()
            if missing.any():
                rs = _info_column(info, "REVIEW_STATUS", "1", "String", df["alt_index"], arr=pinfo)[missing]
                stars = review_stars(rs)
                gs = pd.to_numeric(extra["GOLD_STARS"], errors="coerce")
                gs[missing] = stars
                extra["GOLD_STARS"] = gs.astype("Int64")
        head = info.iloc[:1000].astype(str).tolist()

        def maybe(key: str) -> pd.Series:
            """INFO column for gene/rsID: looked up when declared or seen in the first records."""
            if key in info_defs or any(f"{key}=" in x for x in head):
                return _info_column(info, key, "1", "String", df["alt_index"], arr=pinfo)
            return pd.Series(None, index=df.index, dtype=object)

        sym = maybe("SYMBOL")
        geneinfo = maybe("GENEINFO")
        geneinfo = geneinfo.str.split(":").str[0] if geneinfo.notna().any() else geneinfo
        gene = sym.where(sym.notna() & ~sym.isin(["-", ""]), geneinfo)
        rs_info = maybe("RS")
        if rs_info.notna().any():
            rs_info = ("rs" + rs_info.astype("string").str.split(",").str[0]).astype(object)
    else:
        missing_cols = [k for k in info_fields if k not in df.columns]
        if missing_cols:
            raise VariantInputError(f"{path}: requested column(s) {missing_cols} not in the table")
        gene = df["gene"] if "gene" in df.columns else pd.Series(None, index=df.index, dtype=object)
        rs_info = pd.Series(None, index=df.index, dtype=object)
    ids = df["id"].astype(str)
    if pc_any_rs(ids):
        rsid = ids.str.extract(r"(?:^|;)(rs\d+)", expand=False)
    else:
        rsid = pd.Series(None, index=df.index, dtype=object)
    if "rsid" in df.columns and not is_vcf:
        rsid = df["rsid"].where(df["rsid"].notna(), rsid)
    rsid = rsid.where(rsid.notna(), rs_info)

    out = _normalise(df, genome, max_allele_len, progress, dash_alleles=not is_vcf)
    out["gene"] = gene.where(gene.notna(), None).astype(object).to_numpy()
    out["rsid"] = rsid.where(rsid.notna(), None).astype(object).to_numpy()
    # the input's own ID (VCF ID column or a table's id column) as it is, any scheme; "." = none
    out["id"] = ids.where(~ids.isin([".", "", "nan", "None", "<NA>"]), None).astype(object).to_numpy()
    for key, col in extra.items():
        out[key] = col.to_numpy()
    if _RT + "input_pos" in df.columns:  # re-read of our own table: restore the original input
        for c in _ROUND_TRIP[1:]:
            if _RT + c in df.columns:
                out[c] = df[_RT + c].to_numpy()
        moved = ((out["status"] == "ok") & (out["status_detail"] == "")
                 & ((out["pos"] != out["input_pos"]) | (out["ref"] != out["input_ref"].astype(str).str.upper())
                    | (out["alt"] != out["input_alt"].astype(str).str.upper())))
        out.loc[moved, "status_detail"] = ("normalised from " + out.loc[moved, "input_pos"].astype(str) + ":"
                                          + out.loc[moved, "input_ref"].astype(str) + ":"
                                          + out.loc[moved, "input_alt"].astype(str))
    skip = {"chrom", "pos", "id", "ref", "alt", "info", "line", "record", "alt_index", "gene", "rsid", "malformed"}
    skip |= {_RT + c for c in _ROUND_TRIP}
    for c in df.columns:
        if c not in skip and c not in out.columns:
            out[c] = df[c].to_numpy()
    return out


def _anchor_dash_alleles(genome, chrom: np.ndarray, pos: np.ndarray, ref: np.ndarray, alt: np.ndarray,
                         okm: np.ndarray, mark: Callable) -> None:
    """VCF-anchor MAF-style ``-`` alleles in place (``pos``/``ref``/``alt`` arrays; rows still ok).

    Insertion ``pos, -, TTG`` (``pos`` = base before the insertion) ->
    ``pos, B, BTTG`` with ``B`` the reference base at ``pos``; deletion
    ``pos, ACG, -`` (``pos`` = first deleted base) -> ``pos-1, BACG, B`` with
    ``B`` the base at ``pos-1``. Rows that cannot be anchored are marked
    through ``mark`` (``invalid_allele`` without a genome, ``out_of_bounds``
    when the anchor base is not in the reference); ``okm`` (rows still ok) is
    updated by ``mark``. The REF check and left-normalisation that follow
    treat anchored rows like any VCF record.
    """
    dref, dalt = ref == "-", alt == "-"
    if not (dref | dalt).any():
        return
    mark(dref & dalt, "invalid_allele", "REF and ALT are both '-' (no event)")
    other_ref = pd.Series(ref).str.fullmatch(r"[ACGTN]+").to_numpy(dtype=bool)
    other_alt = pd.Series(alt).str.fullmatch(r"[ACGTN]+").to_numpy(dtype=bool)
    mark(dref & ~other_alt, "invalid_allele",
         lambda m: "ALT " + pd.Series(alt[m]).str.slice(0, 40).map(repr) + " is not A/C/G/T/N (REF is '-')")
    mark(dalt & ~other_ref, "invalid_allele",
         lambda m: "REF " + pd.Series(ref[m]).str.slice(0, 40).map(repr) + " is not A/C/G/T/N (ALT is '-')")
    if genome is None:
        mark(dref | dalt, "invalid_allele",
             "a reference genome is needed to anchor '-' alleles (pass genome= / --fasta), "
             "or write the indel VCF-style with the preceding base")
        return
    names: dict[str, str | None] = {}
    oob_mask = np.zeros(len(pos), dtype=bool)
    unknown = np.zeros(len(pos), dtype=bool)
    oob_msg = np.full(len(pos), "", dtype=object)
    for i in np.flatnonzero((dref | dalt) & okm):
        c = str(chrom[i])
        if c not in names:
            names[c] = genome.resolve_contig(c)
        name = names[c]
        if name is None:
            unknown[i] = True
            continue
        p = int(pos[i])
        a = p if dref[i] else p - 1  # anchor base: before the insertion / before the first deleted base
        first, last = genome.bounds(name)
        if genome.segment_at(name, a) is None:
            oob_mask[i] = True
            if dalt[i] and a == first - 1:
                oob_msg[i] = (f"deletion starting at {name}:{p}, the first base of the reference "
                              f"({name}:{first}-{last}): there is no base before it to anchor the '-' allele")
            else:
                what = f"insertion after {name}:{p}" if dref[i] else f"deletion starting at {name}:{p}"
                oob_msg[i] = (f"{what}: anchor base {name}:{a} is outside the reference "
                              f"({name}:{first}-{last})")
            continue
        b = genome.fetch(name, a, a)
        if dref[i]:
            ref[i], alt[i] = b, b + alt[i]
        else:
            ref[i], alt[i] = b + ref[i], b
        pos[i] = a
    mark(unknown, "unknown_contig", lambda m: "contig " + pd.Series(chrom[m]) + f" is not in {genome.path.name}")
    mark(oob_mask, "out_of_bounds", lambda m: oob_msg[m])


def _normalise(df: pd.DataFrame, genome, max_allele_len: int, progress: bool,
               dash_alleles: bool = False) -> pd.DataFrame:
    """Status, contig renaming, REF check, left-normalisation, duplicates (vectorised where possible).

    With ``dash_alleles`` (table inputs) MAF-style ``-`` alleles are anchored
    first (see :func:`_anchor_dash_alleles`).
    """
    n = len(df)
    in_chrom = df["chrom"].astype(str).to_numpy(dtype=object)
    in_pos = df["pos"].to_numpy(dtype=np.int64)
    in_ref = df["ref"].astype(str).to_numpy(dtype=object)
    in_alt = df["alt"].astype(str).to_numpy(dtype=object)
    import pyarrow as pa
    import pyarrow.compute as pc

    def np_bool(a) -> np.ndarray:
        return a.to_numpy(zero_copy_only=False).astype(bool)

    ref_pa = pc.utf8_upper(pa.array(in_ref, type=pa.string()))
    alt_pa = pc.utf8_upper(pa.array(in_alt, type=pa.string()))
    ref = ref_pa.to_numpy(zero_copy_only=False)
    alt = alt_pa.to_numpy(zero_copy_only=False)
    status = np.full(n, "ok", dtype=object)
    detail = np.full(n, "", dtype=object)
    okm = np.ones(n, dtype=bool)

    def mark(mask: np.ndarray, st: str, msg) -> None:
        m = mask & okm
        if m.any():
            status[m] = st
            detail[m] = msg(m) if callable(msg) else msg
            okm[m] = False

    if "malformed" in df.columns:  # on_error="status": unreadable records first
        why = df["malformed"].to_numpy(dtype=object)
        mark(why != "", "malformed", lambda m: why[m])
    # working coordinates: the input, except for anchored '-' alleles (the input stays in input_*)
    w_pos, w_ref, w_alt = in_pos, ref, alt
    if dash_alleles and ((ref == "-") | (alt == "-")).any():
        w_pos, w_ref, w_alt = in_pos.copy(), ref.astype(object), alt.astype(object)
        _anchor_dash_alleles(genome, in_chrom, w_pos, w_ref, w_alt, okm, mark)
        ref_pa = pa.array(w_ref, type=pa.string())
        alt_pa = pa.array(w_alt, type=pa.string())
    lref = pc.utf8_length(ref_pa).to_numpy(zero_copy_only=False).astype(np.int64)
    lalt = pc.utf8_length(alt_pa).to_numpy(zero_copy_only=False).astype(np.int64)
    symbolic = np_bool(pc.or_(pc.match_substring_regex(alt_pa, r"^<|[\[\]]|^\*$"),
                              pc.and_(pc.greater(pc.utf8_length(alt_pa), 1),
                                      pc.match_substring_regex(alt_pa, r"^\.|\.$"))))
    mark(symbolic, "symbolic_allele", lambda m: "symbolic ALT " + pd.Series(in_alt[m]) + " has no sequence")
    mark(np_bool(pc.is_in(alt_pa, pa.array([".", ""]))), "invalid_allele",
         "ALT is missing ('.')" + ("; write '-' for the empty ALT of a MAF-style deletion" if dash_alleles else ""))
    bad_ref = ~np_bool(pc.match_substring_regex(ref_pa, _ALLELE_RE))
    mark(bad_ref, "invalid_allele", lambda m: "REF " + pd.Series(in_ref[m]).str.slice(0, 40).map(repr)
         + " is not A/C/G/T/N")
    bad_alt = ~np_bool(pc.match_substring_regex(alt_pa, _ALLELE_RE))
    mark(bad_alt, "invalid_allele", lambda m: "ALT " + pd.Series(in_alt[m]).str.slice(0, 40).map(repr)
         + " is not A/C/G/T/N")
    mark(np_bool(pc.equal(ref_pa, alt_pa)), "invalid_allele", "ALT equals REF")
    mark(np.maximum(lref, lalt) > max_allele_len, "too_long",
         lambda m: "allele length " + pd.Series(np.maximum(lref, lalt)[m]).astype(str)
         + f" > max_allele_len {max_allele_len}")
    mark(w_pos < 1, "out_of_bounds", lambda m: "POS " + pd.Series(w_pos[m]).astype(str) + " < 1")

    chrom = in_chrom.copy()
    pos = w_pos.copy()
    ref_o = w_ref.copy()
    alt_o = w_alt.copy()
    ok = okm
    if genome is None:
        idx = np.flatnonzero(ok & ((lref > 1) | (lalt > 1)))
        for i in idx:
            pos[i], ref_o[i], alt_o[i] = _trim(int(pos[i]), ref_o[i], alt_o[i])
    else:
        names = {c: genome.resolve_contig(c) for c in pd.unique(in_chrom)}
        resolved = pd.Series(in_chrom).map(names).to_numpy(dtype=object)
        unknown = pd.isna(resolved)
        mark(unknown, "unknown_contig", lambda m: "contig " + pd.Series(in_chrom[m]) + f" is not in {genome.path.name}")
        chrom = np.where(unknown, in_chrom, resolved)
        _check_against_genome(genome, chrom, pos, ref_o, alt_o, lref, status, detail, progress)

    # duplicates among ok rows, after normalisation (first occurrence stays ok)
    ok = status == "ok"
    if ok.any():
        key = pd.DataFrame({"c": chrom[ok], "p": pos[ok], "r": ref_o[ok], "a": alt_o[ok]})
        dup = key.duplicated(keep="first").to_numpy()
        if dup.any():
            first_rec = key.assign(rec=df["record"].to_numpy()[ok]).groupby(["c", "p", "r", "a"])["rec"].transform("first")
            okidx = np.flatnonzero(ok)[dup]
            status[okidx] = "duplicate"
            detail[okidx] = ("same variant as record " + first_rec[dup].astype(str)).to_numpy()

    changed = (status == "ok") & ((pos != in_pos) | (ref_o != ref) | (alt_o != alt))
    if changed.any():
        detail[changed] = ("normalised from " + pd.Series(in_pos[changed]).astype(str) + ":"
                           + pd.Series(in_ref[changed]) + ":" + pd.Series(in_alt[changed])).to_numpy()
    vid = pc.binary_join_element_wise(pa.array(chrom, type=pa.string()), pc.cast(pa.array(pos), pa.string()),
                                      pa.array(ref_o, type=pa.string()), pa.array(alt_o, type=pa.string()), ":")
    return pd.DataFrame({
        "variant_id": vid.to_numpy(zero_copy_only=False),
        "chrom": chrom.astype(object), "pos": pos, "ref": ref_o, "alt": alt_o,
        "status": status, "status_detail": detail,
        "record": df["record"].to_numpy(dtype=np.int64), "alt_index": df["alt_index"].to_numpy(dtype=np.int64),
        "input_chrom": in_chrom, "input_pos": in_pos, "input_ref": in_ref, "input_alt": in_alt,
    })


def _check_against_genome(genome, chrom, pos, ref, alt, lref, status, detail, progress) -> None:
    """Bounds, REF check and left-normalisation, per reference record (in place)."""
    from tqdm.auto import tqdm

    ok = status == "ok"
    end = pos + lref - 1
    seg_of = np.full(len(pos), -1, dtype=np.int64)
    segs = []
    for c in pd.unique(chrom[ok]):
        rows = np.flatnonzero(ok & (chrom == c))
        for seg in genome.segments(c):
            inside = (pos[rows] >= seg.first) & (end[rows] <= seg.last)
            seg_of[rows[inside]] = len(segs)
            segs.append(seg)
    oob = ok & (seg_of < 0)
    if oob.any():
        msgs = []
        for i in np.flatnonzero(oob):
            first, last = genome.bounds(chrom[i])
            msgs.append(f"{chrom[i]}:{pos[i]}-{end[i]} is outside the reference ({chrom[i]}:{first}-{last})")
        status[oob] = "out_of_bounds"
        detail[oob] = msgs
    chunk = 4_000_000
    pad = 500
    work = [(s, np.flatnonzero(seg_of == s)) for s in range(len(segs))]
    bar = tqdm(total=int(sum(len(r) for _, r in work)), desc="checking REF", unit="var",
               disable=not progress, leave=False)
    for s, rows in work:
        seg = segs[s]
        rows = rows[np.argsort(pos[rows], kind="stable")]
        starts = pos[rows]
        i = 0
        while i < len(rows):
            j = int(np.searchsorted(starts, starts[i] + chunk, side="left"))
            block = rows[i:j]
            lo = max(seg.first, int(starts[i]) - pad)
            hi = min(seg.last, int(end[block].max()))
            seq = genome._fetch_seg(seg, lo, hi)

            def base_at(p: int, _seq=seq, _lo=lo, _seg=seg) -> str | None:
                if p < _seg.first:
                    return None
                if p >= _lo:
                    return _seq[p - _lo]
                return genome._fetch_seg(_seg, p, p)

            for k in block:
                p, r = int(pos[k]), ref[k]
                got = seq[p - lo: p - lo + len(r)]
                if got != r:
                    status[k] = "ref_mismatch"
                    detail[k] = f"REF {r[:40]} but the reference has {got[:40]} at {chrom[k]}:{p}"
                elif len(r) > 1 or len(alt[k]) > 1:
                    pos[k], ref[k], alt[k] = _left_normalise(p, r, alt[k], base_at)
            bar.update(len(block))
            i = j
    bar.close()


# -- ClinVar labels ----------------------------------------------------------------

_STARS = {
    "practice_guideline": 4,
    "reviewed_by_expert_panel": 3,
    "criteria_provided_multiple_submitters_no_conflicts": 2,
    "criteria_provided_conflicting_interpretations": 1,
    "criteria_provided_single_submitter": 1,
}
_PATHO = {"pathogenic", "likely_pathogenic", "pathogenic_low_penetrance", "likely_pathogenic_low_penetrance"}
_BENIGN = {"benign", "likely_benign"}
_CONFLICT = {"uncertain_significance", "conflicting_interpretations_of_pathogenicity",
             "conflicting_data_from_submitters"}


def _norm_term(t: str) -> str:
    return re.sub(r"[^a-z]+", "_", t.strip().lower()).strip("_")


def review_stars(review_status: pd.Series) -> pd.Series:
    """ClinVar review status -> gold stars (0-4), as on the ClinVar web pages."""
    s = pd.Series(review_status, dtype=object)
    codes, uniq = pd.factorize(s, use_na_sentinel=True)
    table = np.array([_STARS.get(_norm_term(str(v)), 0) for v in uniq] + [np.nan], dtype=float)
    return pd.Series(table[codes], index=s.index)


def clinvar_label(significance: str | None, stars: float | None = None, min_stars: int = 0) -> str:
    """ClinVar significance -> ``'pathogenic'``, ``'benign'`` or ``'other'``.

    Combined values (``Pathogenic|not_provided``, ``Benign/Likely_benign``) are
    split on ``|``, ``/`` and ``,``. Pathogenic or likely pathogenic terms with
    no benign and no uncertain/conflicting term give ``pathogenic`` (and
    symmetrically ``benign``); terms such as ``not_provided``, ``risk_factor``,
    ``other`` are neutral. Rows with fewer than ``min_stars`` review stars
    (missing stars count as 0) are ``other``.
    """
    if significance is None or (isinstance(significance, float) and np.isnan(significance)):
        return "other"
    if min_stars > 0:
        try:
            s = float(stars) if stars is not None else 0.0
        except (TypeError, ValueError):
            s = 0.0
        if np.isnan(s) or s < min_stars:
            return "other"
    terms = {_norm_term(t) for t in re.split(r"[|/,;]", str(significance)) if t.strip()}
    p, b, c = bool(terms & _PATHO), bool(terms & _BENIGN), bool(terms & _CONFLICT)
    if p and not b and not c:
        return "pathogenic"
    if b and not p and not c:
        return "benign"
    return "other"


def clinvar_labels(significance: pd.Series, stars: pd.Series | None = None, min_stars: int = 0) -> pd.Series:
    """Vectorised :func:`clinvar_label` (one label per row, same index)."""
    sig = pd.Series(significance)
    uniq = {}
    st = pd.Series(stars, index=sig.index) if stars is not None else pd.Series(np.nan, index=sig.index)
    st = pd.to_numeric(st, errors="coerce")
    out = []
    for v, s in zip(sig.tolist(), st.tolist()):
        k = (v, s)
        if k not in uniq:
            uniq[k] = clinvar_label(v, s, min_stars)
        out.append(uniq[k])
    return pd.Series(out, index=sig.index, dtype=object, name="label")


def status_counts(table: pd.DataFrame) -> dict[str, int]:
    """Count of rows per status, every known status listed (0 when absent)."""
    vc = table["status"].value_counts()
    out = {s: int(vc.get(s, 0)) for s in STATUSES}
    for s, v in vc.items():
        out.setdefault(str(s), int(v))
    return out
