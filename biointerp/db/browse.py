"""Queries behind the browser page: one search box, paged and sorted listings, plot points,
the calibration reading of a score, and head descriptions.

Everything goes through :class:`~biointerp.db.query.VariantDB` (read-only, parameterized
SQL; user text only ever travels as a bound parameter). Sort keys come from a fixed
allow-list. Results are plain dicts ready for JSON.
"""

from __future__ import annotations

import math
import re
import threading
from pathlib import Path

from biointerp.db.query import MAX_POS, QueryError, VariantDB, parse_region
from biointerp.variants import parse_variant_id

_RSID_RE = re.compile(r"^rs\d{1,12}$", re.IGNORECASE)
MAX_QUERY_CHARS = 200

#: sort key -> ORDER BY clause (``{d}`` is ASC or DESC); ties always break on position.
SORTS = {
    "pos": "key {d}, ref {d}, alt {d}",
    "variant_id": "key {d}, ref {d}, alt {d}",
    "score": "score {d} NULLS LAST, key, ref, alt",
    "label": "label {d} NULLS LAST, key, ref, alt",
    "consequence": "consequence {d} NULLS LAST, key, ref, alt",
    "status": "status {d} NULLS LAST, key, ref, alt",
    "gene": "gene {d} NULLS LAST, key, ref, alt",
    "clinvar_significance": "clinvar_significance {d} NULLS LAST, key, ref, alt",
}

#: label text (lower case) -> 1 (pathogenic side) / 0 (benign side) for the calibration reading
POSITIVE = ("pathogenic", "likely_pathogenic", "likely pathogenic", "pathogenic/likely_pathogenic",
            "pathogenic/likely pathogenic")
NEGATIVE = ("benign", "likely_benign", "likely benign", "benign/likely_benign", "benign/likely benign")


def classify(text: str) -> str:
    """What a search text is: ``variant``, ``rsid``, ``region`` or ``gene`` (same rules as
    :meth:`VariantDB.search`). Raises :class:`QueryError` for empty or over-long text."""
    text = (text or "").strip()
    if not text or len(text) > MAX_QUERY_CHARS:
        raise QueryError(f"search text must be 1-{MAX_QUERY_CHARS} characters (got {len(text):,})")
    if _RSID_RE.match(text):
        return "rsid"
    try:
        parse_variant_id(text)
        return "variant"
    except ValueError:
        pass
    return "region" if ":" in text else "gene"


def _wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return (float("nan"), float("nan"))
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return (max(0.0, mid - half), min(1.0, mid + half))


def head_info(db: VariantDB) -> list[dict]:
    """One dict per head column: ``name``, ``display``, ``group``, ``description``.

    Reads whatever head metadata the database carries (:meth:`VariantDB.head_info`'s table, or a
    ``head_info``/``head_metadata`` metadata entry: a list of dicts with ``column_name``/``name``
    or a ``name -> dict`` mapping) and passes ``view``, ``category``, ``kind`` and ``threshold``
    through when present; falls back to the column name and its prefix (``score_``,
    ``ref_score_``...) as the group.
    """
    meta = getattr(db, "head_info", None)
    if callable(meta):
        meta = meta()
    if hasattr(meta, "to_dict"):  # VariantDB.head_info(): a DataFrame (column_name, display, group, ...)
        meta = meta.rename(columns={"column_name": "name"}).to_dict("records")
    if meta is None:
        meta = db.metadata.get("head_info") or db.metadata.get("head_metadata") or db.metadata.get("heads_info")
    by_name: dict = {}
    if isinstance(meta, dict):
        by_name = {str(k): (v if isinstance(v, dict) else {"description": v}) for k, v in meta.items()}
    elif isinstance(meta, list):
        by_name = {str(m.get("column_name") or m.get("name")): m for m in meta
                   if isinstance(m, dict) and (m.get("column_name") or m.get("name")) is not None}
    out = []
    for h in db.heads:
        m = by_name.get(h, {})
        pre = re.match(r"^(.*?_)\d+$", h)
        out.append({
            "name": h,
            "display": _text(m.get("display_name") or m.get("display") or m.get("title")) or h,
            "group": _text(m.get("group")) or (pre.group(1).rstrip("_") if pre else "heads"),
            "description": _text(m.get("description")),
            **{k: _clean(m[k]) for k in ("view", "category", "kind", "threshold") if m.get(k) is not None},
        })
    return out


class Browser:
    """Page queries over one open :class:`VariantDB`.

    Parameters
    ----------
    db
        The open database.
    max_bp
        Widest region accepted.
    bins
        Number of equal-count score bins of the calibration reading.
    """

    def __init__(self, db: VariantDB, *, max_bp: int = 5_000_000, bins: int = 20,
                 explanations: Explanations | None = None):
        self.db = db
        self.explanations = explanations
        self.max_bp = max_bp
        self.n_bins = bins
        self._cal: dict | None = None
        self._cal_lock = threading.Lock()
        self.list_columns = [c for c in db.base_columns if c not in ("variant_id0",)]

    # -- what a search text selects ---------------------------------------------------------
    def _where(self, kind: str, text: str) -> tuple[str, str, list]:
        """``(target, WHERE sql, params)`` for a gene or region search."""
        db = self.db
        if kind == "gene":
            res = db._run("SELECT gene, key_start, key_end FROM genes WHERE gene_upper = ?", [text.upper()])
            spans = [s for s in res.rows if s[0] == text] or res.rows
            if not spans:
                return text, "", []
            name = spans[0][0]
            spans = [s for s in spans if s[0] == name]
            where = "(" + " OR ".join("key BETWEEN ? AND ?" for _ in spans) + ") AND gene = ?"
            return name, where, [x for s in spans for x in s[1:]] + [name]
        chrom, start, end = parse_region(text)
        c = db.resolve_contig(chrom)
        if start is None:
            start, end = 1, MAX_POS
        if end - start + 1 > self.max_bp:
            raise QueryError(f"region spans {end - start + 1:,} bp; the limit is {self.max_bp:,} bp; narrow it")
        target = f"{c or chrom}:{start}-{end}"
        if c is None:
            return target, "", []
        return target, "key BETWEEN ? AND ?", [db._key(c, start), db._key(c, end)]

    def search(self, text: str, *, sort: str = "pos", order: str = "asc", offset: int = 0,
               limit: int = 50) -> dict:
        """One page of what ``text`` selects. Returns ``kind, target, total, offset, limit, sort,
        order, columns, rows`` (rows as lists in ``columns`` order)."""
        kind = classify(text)
        text = text.strip()
        if sort not in SORTS:
            raise QueryError(f"cannot sort by {sort[:40]!r}; choose one of {', '.join(SORTS)}")
        if order not in ("asc", "desc"):
            raise QueryError("order must be asc or desc")
        db = self.db
        out = {"kind": kind, "q": text, "offset": offset, "limit": limit, "sort": sort, "order": order,
               "columns": self.list_columns}
        if kind in ("variant", "rsid"):
            res = db.lookup(text, heads=False) if kind == "variant" else db.rsid(text, heads=False)
            idx = [res.columns.index(c) for c in self.list_columns]
            rows = [[r[i] for i in idx] for r in res.rows]
            target = rows[0][0] if kind == "variant" and rows else text
            return {**out, "target": target, "total": len(rows), "rows": rows[offset: offset + limit]}
        target, where, params = self._where(kind, text)
        if not where:
            return {**out, "target": target, "total": 0, "rows": []}
        cols = ", ".join(f'"{c}"' for c in self.list_columns)
        total = db._run(f"SELECT count(*) FROM variants WHERE {where}", params).rows[0][0]
        res = db._run(f"SELECT {cols} FROM variants WHERE {where} ORDER BY {SORTS[sort].format(d=order.upper())} "
                      "LIMIT ? OFFSET ?", [*params, int(limit), int(offset)])
        return {**out, "target": target, "total": total, "rows": [list(r) for r in res.rows]}

    def points(self, text: str, *, max_points: int = 5000) -> dict:
        """Position, score, label and id of the variants ``text`` selects (gene or region), in
        position order; evenly thinned to at most ``max_points`` (``thinned`` says by how much)."""
        kind = classify(text)
        if kind not in ("gene", "region"):
            raise QueryError("the plot needs a gene or a region")
        target, where, params = self._where(kind, text.strip())
        empty = {"kind": kind, "target": target, "chrom": None, "total": 0, "every": 1, "pos": [], "score": [],
                 "label": [], "id": []}
        if not where:
            return empty
        db = self.db
        total = db._run(f"SELECT count(*) FROM variants WHERE {where}", params).rows[0][0]
        if not total:
            return empty
        empty["chrom"] = db._run(f"SELECT chrom FROM variants WHERE {where} LIMIT 1", params).rows[0][0]
        every = max(1, -(-total // max_points))
        res = db._run(f"SELECT pos, score, label, variant_id FROM variants WHERE {where} "
                      "QUALIFY (row_number() OVER (ORDER BY key, ref, alt) - 1) % ? = 0 ORDER BY key, ref, alt",
                      [*params, every])
        cols = list(zip(*res.rows)) if res.rows else [[], [], [], []]
        score = [None if (s is None or not math.isfinite(s)) else s for s in cols[1]]
        return {**empty, "total": total, "every": every, "pos": list(cols[0]), "score": score,
                "label": list(cols[2]), "id": list(cols[3])}

    # -- calibration ----------------------------------------------------------------------------
    def calibration(self) -> dict:
        """Equal-count bins of the score over rows labelled pathogenic or benign: per bin the score
        range, counts and the observed share pathogenic (Wilson 95% interval). Computed once."""
        with self._cal_lock:
            if self._cal is None:
                self._cal = self._compute_calibration()
            return self._cal

    def _compute_calibration(self) -> dict:
        db = self.db
        pos = ", ".join("?" for _ in POSITIVE)
        neg = ", ".join("?" for _ in NEGATIVE)
        lab = (f"CASE WHEN lower(label) IN ({pos}) THEN 1 WHEN lower(label) IN ({neg}) THEN 0 END")
        base = f"SELECT score, {lab} AS y FROM variants WHERE score IS NOT NULL AND label IS NOT NULL"
        lp = [*POSITIVE, *NEGATIVE]
        n, k = db._run(f"SELECT count(y), sum(y) FROM ({base}) WHERE y IS NOT NULL", lp).rows[0]
        info = {"labelled": int(n or 0), "pathogenic": int(k or 0), "positive_labels": list(POSITIVE),
                "negative_labels": list(NEGATIVE), "bins": []}
        if not n:
            return info
        nb = max(1, min(self.n_bins, int(n) // 50))
        qs = [i / nb for i in range(1, nb)]
        edges: list[float] = []
        if qs:
            qlist = "[" + ", ".join(repr(x) for x in qs) + "]"  # our own numbers, not user text
            edges = db._run(f"SELECT quantile_disc(score, {qlist}) FROM ({base}) WHERE y IS NOT NULL", lp).rows[0][0]
            edges = sorted(set(float(e) for e in edges))
        bin_sql = " + ".join(f"(score > {e!r})::INTEGER" for e in edges) or "0"
        rows = db._run(f"SELECT {bin_sql} AS b, count(*), sum(y), min(score), max(score) FROM ({base}) "
                       "WHERE y IS NOT NULL GROUP BY b ORDER BY b", lp).rows
        for b, cnt, kk, lo, hi in rows:
            ci = _wilson(int(kk), int(cnt))
            info["bins"].append({"bin": int(b), "lo": float(lo), "hi": float(hi), "n": int(cnt), "pathogenic": int(kk),
                                 "share": kk / cnt, "ci": list(ci)})
        info["edges"] = edges
        return info

    def reading(self, score: float | None) -> dict | None:
        """The calibration bin holding ``score`` (``None`` without a score or labelled rows)."""
        if score is None or not math.isfinite(score):
            return None
        cal = self.calibration()
        if not cal["bins"]:
            return None
        b = sum(score > e for e in cal.get("edges", []))
        for x in cal["bins"]:
            if x["bin"] == b:
                return {**x, "score": score, "labelled": cal["labelled"]}
        return None

    # -- one variant ----------------------------------------------------------------------------
    def variant(self, variant_id: str, zero_based: bool = False) -> dict:
        """Every column of one variant id (all rows when the id occurs more than once): ``fields``
        (base columns), ``heads`` (values in :attr:`VariantDB.heads` order; names and descriptions
        come from :func:`head_info`), the calibration ``reading`` of its score and, when an
        explanations table is loaded, its top SAE ``explanations``."""
        if len(variant_id) > MAX_QUERY_CHARS:
            raise QueryError(f"variant id must be at most {MAX_QUERY_CHARS} characters")
        res = self.db.lookup(variant_id, zero_based=zero_based, heads=True)
        base = [c for c in res.columns if c not in self.db._head_idx]
        heads = self.db.heads
        rows = []
        for r in res.rows:
            rec = dict(zip(res.columns, r))
            rows.append({
                "fields": {c: _clean(rec[c]) for c in base},
                "heads": [_clean(rec.get(h)) for h in heads],
                "reading": self.reading(rec.get("score")),
                "explanations": self.explanations.get(rec["variant_id"]) if self.explanations else None,
            })
        return {"query": variant_id, "count": len(rows), "n_heads": len(heads), "results": rows}


class Explanations:
    """The side table of ``biointerp features explain`` (``variant_id, rank, latent, delta, z,
    position, label, label_score, status``), loaded once into an in-memory DuckDB table sorted by
    variant id, read with parameterized look-ups."""

    COLUMNS = ["rank", "latent", "delta", "z", "position", "label", "label_score"]

    def __init__(self, path: str | Path, top: int = 10):
        import duckdb

        self.path, self.top = Path(path), top
        self._con = duckdb.connect()
        self._con.execute("SET enable_progress_bar = false")
        self._con.execute("SET threads = 1")
        t = self._con.execute("SELECT * FROM read_parquet(?)", [str(self.path)]).to_arrow_table()
        need = {"variant_id", "rank", "latent", "delta"}
        if not need <= set(t.column_names):
            raise ValueError(f"{path}: not an explanations table (needs {sorted(need)}; has {t.column_names[:10]})")
        self.columns = [c for c in self.COLUMNS if c in t.column_names]
        status = "status = 'ok'" if "status" in t.column_names else "TRUE"
        self._con.register("ex_src", t)
        self._con.execute(f"CREATE TABLE ex AS SELECT variant_id, {', '.join(self.columns)} FROM ex_src "
                          f"WHERE {status} ORDER BY variant_id, rank")
        self._con.unregister("ex_src")
        self.n_variants = self._con.execute("SELECT count(DISTINCT variant_id) FROM ex").fetchone()[0]
        self._lock = threading.Lock()

    def get(self, variant_id: str) -> list[dict]:
        with self._lock:
            cur = self._con.execute(f"SELECT {', '.join(self.columns)} FROM ex WHERE variant_id = ? ORDER BY rank "
                                    "LIMIT ?", [variant_id, self.top])
            return [{c: _clean(v) for c, v in zip(self.columns, r)} for r in cur.fetchall()]


def _text(v) -> str:
    """Metadata text; NaN/None (missing in a DataFrame) become ''."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return ""
    return str(v)


def _clean(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v
