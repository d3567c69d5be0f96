"""Query rows as a text table, the same text as pandas' ``DataFrame.to_string`` without pandas.

``biointerp db query`` prints ``pd.DataFrame.from_records(rows, columns).to_string(index=False,
max_colwidth=40)``; importing pandas costs about half a second, more than the query itself. This
module writes the same text for the column types a query returns: text (with ``None``), floats (with
``None``/NaN), integers and booleans. Anything else (mixed types, infinities, dates, lists...) makes
:func:`to_string` return ``None`` and the caller falls back to pandas. ``tests/test_db_textfmt.py``
compares the two on generated and real query results.

The rules mirror pandas 2.x's ``pandas.io.formats.format`` (``display.precision`` 6, right-justified
columns, a leading space in numeric column headers, long cells cut to ``max_colwidth`` with ``...``).
"""

from __future__ import annotations

import math
import re

_DIGITS = 6  # pandas' display.precision
_NUMBER = re.compile(r"^\s*[\+-]?[0-9]+\.[0-9]*$")
_ESCAPES = str.maketrans({"\t": r"\t", "\n": r"\n", "\r": r"\r"})


def _kind(values: list) -> str | None:
    """The pandas dtype ``from_records`` gives a column: ``object``, ``float``, ``int``, ``bool``
    (``None`` for columns this module does not format)."""
    types = {type(v) for v in values}
    if types <= {str, type(None)}:
        return "object"
    if types == {bool}:
        return "bool"
    if types == {int}:
        return "int" if all(-2**63 <= v < 2**63 for v in values) else None
    if types <= {float, int, type(None)} and float in types:
        if all(v is None or isinstance(v, int) or not math.isinf(v) for v in values) \
                and all(not isinstance(v, int) or abs(v) < 2**53 for v in values):
            return "float"
    return None


def _trim_zeros(strs: list[str]) -> list[str]:
    """Trim trailing zeros equally from every decimal number, keeping at least one decimal."""
    while True:
        nums = [x for x in strs if _NUMBER.match(x)]
        if not nums or not all(x.endswith("0") for x in nums):
            break
        strs = [x[:-1] if _NUMBER.match(x) else x for x in strs]
    return [x + "0" if _NUMBER.match(x) and x.endswith(".") else x for x in strs]


def _floats(values: list) -> list[str]:
    vals = [None if v is None or v != v else float(v) for v in values]

    def fmt(spec: str) -> list[str]:
        return _trim_zeros([("NaN" if v is None else format(v, spec)) for v in vals])

    out = fmt(f".{_DIGITS}f")
    too_long = max(len(x) for x in out) > _DIGITS + 6 if out else False
    finite = [abs(v) for v in vals if v is not None]
    large = any(a > 1e6 for a in finite)
    small = any(0 < a < 10 ** (-_DIGITS) for a in finite)
    if small or (too_long and large):
        out = fmt(f".{_DIGITS}e")
    return out


def _cells(values: list, kind: str) -> list[str]:
    if kind == "float":
        return _floats(values)
    if kind == "int":
        return [f"{v:d}" for v in values]
    if kind == "bool":
        return [str(v) for v in values]
    return ["None" if v is None else v.translate(_ESCAPES) for v in values]


def to_string(columns: list[str], rows: list[tuple], max_colwidth: int = 40) -> str | None:
    """``DataFrame.from_records(rows, columns=columns).to_string(index=False, max_colwidth=...)``,
    or ``None`` when a column holds values this module does not format like pandas."""
    if not rows or not columns or len(set(columns)) != len(columns) \
            or any(not isinstance(c, str) or c[:1] == " " for c in columns) \
            or any(len(r) != len(columns) for r in rows):
        return None
    blocks = []
    for j, name in enumerate(columns):
        values = [r[j] for r in rows]
        kind = _kind(values)
        if kind is None:
            return None
        header = (" " + name if kind != "object" else name).translate(_ESCAPES)
        cells = _cells(values, kind)
        width = max(len(header), max(len(x) for x in cells))
        if width > max_colwidth:
            width = max_colwidth
        cells = [x[: width - 3] + "..." if max_colwidth > 3 and len(x) > width else x for x in cells]
        cells = [x.rjust(width) for x in cells]
        width = max(len(header), max(len(x) for x in cells))
        blocks.append([header.rjust(width)] + cells)
    widths = [max(len(x) for x in b) + 1 for b in blocks[:-1]] + [max(len(x) for x in blocks[-1])]
    return "\n".join("".join(b[i].ljust(w) for b, w in zip(blocks, widths)) for i in range(len(rows) + 1))
