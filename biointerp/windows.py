"""Reference and variant sequence windows, built in one place for scoring and harvest.

Every input row becomes a :class:`PreparedVariant` that keeps its status: rows
already marked non-``ok`` pass through, alleles that are not plain bases get
``invalid_allele``, and reference failures get the status carried by the
:class:`~biointerp.genome.GenomeError` (``unknown_contig``, ``out_of_bounds``,
``ref_mismatch``).

Two variant-window shapes (``variant_window``):

* ``"splice"``: ``alt`` spliced into the reference window (``ref[:offset] + alt +
  ref[offset+len(ref):]``), so an indel changes the window's length. This is the
  Evo 2 zero-shot notebook's and EVEE's public harvest's window.
* ``"same_length"``: the spliced window cut or extended downstream from the
  genome to the reference window's length (the ``genomic`` harvest recipe).

:func:`centred_bounds` turns a scoring ``window`` length into ``(upstream,
downstream)`` and refuses odd lengths (see its doc).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from biointerp.genome import Genome, GenomeError, variant_sequences

VARIANT_WINDOWS = ("splice", "same_length")


@dataclass
class PreparedVariant:
    """One input row with its windows (``ok`` rows only have sequences)."""

    row: int
    variant_id: str
    status: str
    status_detail: str
    ref_seq: str = ""
    alt_seq: str = ""
    start: int = 0  # 1-based genome position of ref_seq[0]
    offset: int = 0
    ref_len: int = 0
    alt_len: int = 0
    n_count: int = 0


def centred_bounds(window: int) -> tuple[int, int]:
    """``(upstream, downstream)`` of a ``window``-bp window centred on the variant.

    The Evo 2 BRCA1 notebook takes ``window // 2`` bases on either side, so an
    odd window there is one base shorter than asked. Rather than silently
    returning another length, odd windows are refused (ValueError).
    """
    if window < 2:
        raise ValueError("window must be at least 2 bp")
    if window % 2:
        raise ValueError(f"window must be even: the Evo 2 zero-shot window covers window/2 bases on either side "
                         f"of the variant; use {window - 1} or {window + 1} instead of {window}")
    return window // 2, window // 2


def prepare_variants(genome: Genome, variants: pd.DataFrame, upstream: int, downstream: int,
                     variant_window: str = "splice") -> list[PreparedVariant]:
    """Reference/variant windows for every row of ``variants`` (status kept for every row).

    ``variants`` needs ``chrom, pos, ref, alt`` (``variant_id`` and ``status``
    optional: rows whose status is not ``ok`` are passed through untouched).
    ``variant_window`` is ``"splice"`` or ``"same_length"`` (module doc).
    """
    if variant_window not in VARIANT_WINDOWS:
        raise ValueError(f"unknown variant_window {variant_window!r}; use one of {', '.join(VARIANT_WINDOWS)}")
    same_length = variant_window == "same_length"
    out: list[PreparedVariant] = []
    has_status = "status" in variants.columns
    for i, r in enumerate(variants.itertuples(index=False)):
        rec = r._asdict()
        vid = str(rec.get("variant_id") or f"{rec['chrom']}:{rec['pos']}:{rec['ref']}:{rec['alt']}")
        status = str(rec["status"]) if has_status else "ok"
        detail = str(rec.get("status_detail") or "") if status != "ok" else ""
        if status != "ok":
            out.append(PreparedVariant(i, vid, status, detail))
            continue
        ref, alt = str(rec["ref"]).upper(), str(rec["alt"]).upper()
        if not ref or not alt or set(ref + alt) - set("ACGTN"):
            out.append(PreparedVariant(i, vid, "invalid_allele", f"alleles {ref!r}/{alt!r} are not plain bases"))
            continue
        try:
            vw = variant_sequences(genome, str(rec["chrom"]), int(rec["pos"]), ref, alt,
                                   upstream, downstream, same_length=same_length)
        except GenomeError as err:
            out.append(PreparedVariant(i, vid, err.status, str(err)))
            continue
        out.append(PreparedVariant(i, vid, "ok", "", vw.ref_seq, vw.alt_seq, vw.start, vw.offset,
                                   len(ref), len(alt), vw.n_count))
    return out
