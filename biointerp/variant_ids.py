"""Canonical variant ids (``chrom:pos:ref:alt``, 1-based VCF position): make and parse.

Kept apart from :mod:`biointerp.variants` (which reads whole tables with pandas) so that
light commands (``biointerp db query``) parse ids without importing pandas.
"""

from __future__ import annotations

import re

_ID_RE = re.compile(r"^\s*([^:\s-]+(?:_[^:\s-]+)*)[:\-_](\d+)[:\-_]([A-Za-z*.]+)[:\-_>/]([A-Za-z*.,<>]+)\s*$")


def make_variant_id(chrom: str, pos: int, ref: str, alt: str) -> str:
    """Return the canonical id ``chrom:pos:ref:alt`` (1-based ``pos``)."""
    return f"{chrom}:{int(pos)}:{ref}:{alt}"


def parse_variant_id(text: str, zero_based: bool = False) -> tuple[str, int, str, str]:
    """Parse ``chr17:43045712:T:C``, ``chr17-43045712-T-C`` or ``17_43045712_T_C``.

    Returns ``(chrom, pos, ref, alt)`` with a 1-based ``pos``; with
    ``zero_based=True`` the input position is read as 0-based (EVEE ids) and
    shifted by one. Alleles are upper-cased. Raises ``ValueError`` with the
    accepted forms when ``text`` is not a variant id.
    """
    m = _ID_RE.match(text or "")
    if not m:
        raise ValueError(
            f"not a variant id: {text!r}; expected chrom:pos:ref:alt "
            "(e.g. chr17:43045712:T:C or chr17-43045712-T-C)"
        )
    chrom, pos, ref, alt = m.group(1), int(m.group(2)), m.group(3).upper(), m.group(4).upper()
    if zero_based:
        pos += 1
    if pos < 1:
        raise ValueError(f"position must be >= 1 (1-based) in {text!r}")
    return chrom, pos, ref, alt
