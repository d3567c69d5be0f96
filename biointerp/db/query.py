"""Read-only access to a variant database: exact, region, gene and rsID look-ups."""

from __future__ import annotations

import json
import re
import queue
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from biointerp.db.evee import BASE_COLUMNS, q
from biointerp.genome import contig_aliases
from biointerp.variant_ids import parse_variant_id

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

_REGION_RE = re.compile(r"^\s*([A-Za-z0-9_.]{1,64})(?::([\d,]{1,15})(?:-([\d,]{1,15}))?)?\s*$")
_RSID_RE = re.compile(r"^rs\d{1,12}$", re.IGNORECASE)
#: Default cap on the rows of one rsID look-up (``VariantDB.rsid(..., limit=None)`` lifts it).
RSID_LIMIT = 1000
_GENE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@/-]{0,63}$")


MAX_POS = 2**31 - 1


class QueryError(ValueError):
    """Bad query input (malformed id, region, gene name, limits)."""


@dataclass
class Result:
    """Columns and rows of a query (cheap; ``.frame()`` converts to pandas)."""

    columns: list[str]
    rows: list[tuple]
    truncated: bool = False

    def frame(self) -> pd.DataFrame:
        import pandas as pd  # imported here: light commands print rows without pandas (~0.5 s import)

        return pd.DataFrame.from_records(self.rows, columns=self.columns)

    def records(self) -> list[dict]:
        return [dict(zip(self.columns, r)) for r in self.rows]


def parse_region(text: str) -> tuple[str, int | None, int | None]:
    """``chr17:43,000,000-43,100,000`` -> ``("chr17", 43000000, 43100000)`` (1-based, inclusive).

    ``chr17:5`` is one position, ``chr17`` the whole contig (start/end ``None``).
    """
    m = _REGION_RE.match(text or "")
    if not m:
        raise QueryError(f"not a region: {text[:80]!r}; expected chrom:start-end, e.g. chr17:43044295-43125483")
    chrom, a, b = m.group(1), m.group(2), m.group(3)
    if a is None:
        return chrom, None, None
    start = int(a.replace(",", ""))
    end = int(b.replace(",", "")) if b else start
    if start < 1 or end < start or end > MAX_POS:
        raise QueryError(f"bad region {text[:80]!r}: need 1 <= start <= end <= {MAX_POS:,} (1-based, inclusive)")
    return chrom, start, end


class VariantDB:
    """A variant database opened read-only. Thread-safe: at most ``concurrency`` queries run at once,
    each on its own DuckDB cursor (``threads`` DuckDB threads per query).

    Every look-up returns a :class:`Result`; :meth:`query` mirrors the CLI and
    returns a DataFrame.
    """

    def __init__(self, path: str | Path, concurrency: int = 4, threads: int = 1,
                 max_head_values: int = 5_000_000):
        path = Path(path)
        # wide layout: a region or gene result carries head values for at most this many
        # values (rows x heads asked; 1,019 rows at 4,906 heads), the rest is cut with
        # ``truncated=True`` -- a ClinVar gene can hold 20k+ variants, 100M+ values at full width
        self.max_head_values = max_head_values
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such database; build one with `biointerp db build`")
        self.path = path
        self._con = duckdb.connect(str(path), read_only=True)
        self._con.execute("SET enable_progress_bar = false")
        # One DuckDB thread per query: look-ups touch a few row groups, and on a busy machine
        # cross-thread scheduling costs more than it saves (exact p50 3.2 -> 1.1 ms at 4.25M rows).
        self._con.execute(f"SET threads = {max(1, int(threads))}")
        self._pool: queue.Queue = queue.Queue()
        for _ in range(max(1, int(concurrency))):
            cur = self._con.cursor()
            cur.execute("SET enable_progress_bar = false")
            self._pool.put(cur)
        try:
            self.metadata = {k: json.loads(v) for k, v in self._con.execute("SELECT key, value FROM metadata").fetchall()}
        except duckdb.Error as err:
            raise ValueError(f"{path} is not a biointerp variant database ({err})") from None
        self.heads: list[str] = list(self.metadata.get("heads", []))
        # databases built before the ``id`` column existed lack it: list the columns they have
        have = set(self.metadata.get("columns", BASE_COLUMNS))
        self.base_columns = [c for c in BASE_COLUMNS if c in have]
        self._head_idx = {h: i for i, h in enumerate(self.heads)}
        self.wide = self.metadata.get("layout") == "wide"
        self._store = None
        if self.wide:
            from biointerp.db.wide import open_store

            self._store = open_store(self.metadata, path, self._con)
        self.contigs = {c: r for c, r in self._con.execute("SELECT chrom, rank FROM contigs").fetchall()}
        self._alias = {}
        for c in self.contigs:
            for a in contig_aliases(c):
                self._alias.setdefault(a.lower(), c)

    # -- plumbing -----------------------------------------------------------------------
    def _run(self, sql: str, params: list, heads: bool | list[str] = False, keep=None) -> Result:
        # Cursors are created up front in the opening thread and handed out one per query:
        # creating them lazily from many threads at once can deadlock duckdb's Python binding.
        cur = self._pool.get()
        try:
            cur.execute(sql, params)
            rows = cur.fetchall()
            cols = [d[0] for d in cur.description]
        finally:
            self._pool.put(cur)
        if cols and cols[-1] == "heads" and self.heads:
            # the packed FLOAT[n] head array becomes one named column per head
            n = len(self.heads)
            cols = cols[:-1] + self.heads
            rows = [r[:-1] + (tuple(r[-1]) if r[-1] is not None else (None,) * n) for r in rows]
        elif cols[-2:] == ["__shard", "__frow"]:
            # wide layout: head values come from the head store, only for the rows returned
            if keep is not None:
                rows = [r for r in rows if keep(r)]
            names = self._head_list(heads)
            cols = cols[:-2] + names
            vals = self._store.fetch([(r[-2], r[-1]) for r in rows], names) if names and rows else [()] * len(rows)
            rows = [r[:-2] + v for r, v in zip(rows, vals)]
        return Result(cols, rows)

    def _head_list(self, heads: bool | list[str]) -> list[str]:
        if heads is True:
            return list(self.heads)
        if not heads:
            return []
        unknown = [h for h in heads if h not in self._head_idx]
        if unknown:
            raise QueryError(f"unknown head columns {unknown[:5]}; available e.g. {self.heads[:5]}")
        return list(heads)

    def _cols(self, heads: bool | list[str] = True) -> str:
        cols = [q(c) for c in self.base_columns]
        if self.wide:
            if self._head_list(heads):
                cols += ["shard AS __shard", "frow AS __frow"]
            return ", ".join(cols)
        if heads is True:
            if self.heads:
                cols.append("heads")
        else:
            cols += [f"heads[{self._head_idx[h] + 1}] AS {q(h)}" for h in self._head_list(heads)]
        return ", ".join(cols)

    def _colnames(self, heads: bool | list[str]) -> list[str]:
        return self.base_columns + self._head_list(heads)

    def resolve_contig(self, name: str) -> str | None:
        """Contig name as stored, for any alias (chr17/17, chrM/MT), else ``None``."""
        for a in contig_aliases(name):
            hit = self._alias.get(a.lower())
            if hit is not None:
                return hit
        return None

    def _key(self, chrom: str, pos: int) -> int:
        return self.contigs[chrom] * 4294967296 + pos

    @staticmethod
    def _score_filter(min_score: float | None, max_score: float | None) -> tuple[str, list]:
        sql, params = "", []
        if min_score is not None:
            sql += " AND score >= ?"
            params.append(float(min_score))
        if max_score is not None:
            sql += " AND score <= ?"
            params.append(float(max_score))
        return sql, params

    # -- look-ups -------------------------------------------------------------------------
    def lookup(self, variant_id: str, zero_based: bool = False, heads: bool | list[str] = True) -> Result:
        """Rows for one variant id in any accepted form (``chr17:43045712:T:C``, ``17-43045712-T-C``...)."""
        try:
            chrom, pos, ref, alt = parse_variant_id(variant_id, zero_based=zero_based)
        except ValueError as err:
            raise QueryError(str(err)) from None
        if pos > MAX_POS:
            raise QueryError(f"position out of range in {variant_id[:80]!r}")
        c = self.resolve_contig(chrom)
        if c is None:
            return Result(self._colnames(heads), [])
        if self.wide:  # allele filter before head values are fetched
            i_ref, i_alt = self.base_columns.index("ref"), self.base_columns.index("alt")
            res = self._run(f"SELECT {self._cols(heads)} FROM variants WHERE key = ?", [self._key(c, pos)], heads,
                            keep=lambda r: r[i_ref] == ref and r[i_alt] == alt)
            res.rows = [r for r in res.rows if r[i_ref] == ref and r[i_alt] == alt]
            return res
        res = self._run(f"SELECT {self._cols(heads)} FROM variants WHERE key = ?", [self._key(c, pos)])
        i_ref, i_alt = res.columns.index("ref"), res.columns.index("alt")
        res.rows = [r for r in res.rows if r[i_ref] == ref and r[i_alt] == alt]
        return res

    def region(self, region: str, *, min_score: float | None = None, max_score: float | None = None,
               limit: int | None = None, max_bp: int | None = None, heads: bool | list[str] = True) -> Result:
        """Variants with ``start <= pos <= end`` on a contig, in position order."""
        chrom, start, end = parse_region(region)
        c = self.resolve_contig(chrom)
        if start is None:
            start, end = 1, MAX_POS
        if max_bp is not None and end - start + 1 > max_bp:
            raise QueryError(f"region spans {end - start + 1:,} bp; the limit is {max_bp:,} bp; split it")
        if c is None:
            return Result(self._colnames(heads), [])
        fsql, fparams = self._score_filter(min_score, max_score)
        return self._limited(
            f"SELECT {self._cols(heads)} FROM variants WHERE key BETWEEN ? AND ?{fsql} ORDER BY key, ref, alt",
            [self._key(c, start), self._key(c, end), *fparams], limit, heads)

    def _limited(self, sql: str, params: list, limit: int | None, heads: bool | list[str] = False) -> Result:
        if self.wide and self.max_head_values:
            n_heads = len(self._head_list(heads))
            if n_heads:
                cap = max(1, self.max_head_values // n_heads)
                limit = cap if limit is None else min(limit, cap)
        if limit is None:
            return self._run(sql, params, heads)
        res = self._run(sql + " LIMIT ?", [*params, int(limit) + 1], heads)
        if len(res.rows) > limit:
            res.rows, res.truncated = res.rows[:limit], True
        return res

    def gene(self, gene: str, *, top: int | None = None, min_score: float | None = None,
             max_score: float | None = None, limit: int | None = None, heads: bool | list[str] = True) -> Result:
        """A gene's variants; ``top=N`` gives the N highest scores (NULL last), else position order."""
        if not _GENE_RE.match(gene or ""):
            raise QueryError(f"not a gene symbol: {gene[:80]!r}")
        spans = self._run("SELECT gene, key_start, key_end FROM genes WHERE gene_upper = ?", [gene.upper()]).rows
        exact = [s for s in spans if s[0] == gene]
        spans = exact or spans
        if not spans:
            return Result(self._colnames(heads), [])
        name = spans[0][0]
        where = " OR ".join("key BETWEEN ? AND ?" for _ in spans)
        params: list = [x for s in spans for x in s[1:]]
        fsql, fparams = self._score_filter(min_score, max_score)
        order = "score DESC NULLS LAST, key" if top else "key, ref, alt"
        sql = f"SELECT {self._cols(heads)} FROM variants WHERE ({where}) AND gene = ?{fsql} ORDER BY {order}"
        return self._limited(sql, [*params, name, *fparams], top or limit, heads)

    def rsid(self, rsid: str, heads: bool | list[str] = True, limit: int | None = RSID_LIMIT) -> Result:
        """Rows carrying dbSNP id ``rsid`` (``rs123``), at most ``limit`` (``truncated`` says when more match)."""
        if not _RSID_RE.match(rsid or ""):
            raise QueryError(f"not an rsID: {rsid[:80]!r}; expected rs<digits>")
        if limit is not None and limit < 1:
            raise QueryError(f"limit must be at least 1, got {limit}")
        cap = "" if limit is None else f" ORDER BY key LIMIT {int(limit) + 1}"
        keys = [r[0] for r in self._run(f"SELECT key FROM rsids WHERE rsid = ?{cap}", [rsid.lower()]).rows]
        if not keys:
            return Result(self._colnames(heads), [])
        res = self._run(f"SELECT {self._cols(heads)} FROM variants WHERE key IN (SELECT unnest(?::BIGINT[])) "
                        "ORDER BY key", [keys], heads)
        i = res.columns.index("rsid")
        res.rows = [r for r in res.rows if r[i] and rsid.lower() in [x.strip().lower() for x in r[i].split(";")]]
        if limit is not None and len(res.rows) > limit:
            res.rows, res.truncated = res.rows[:limit], True
        return res

    def search(self, text: str, *, limit: int = 100, max_bp: int | None = None,
               heads: bool | list[str] = False) -> tuple[str, Result]:
        """Guess what ``text`` is (variant id, rsID, region, gene) and look it up. Returns ``(kind, result)``."""
        text = (text or "").strip()
        if not text or len(text) > 200:
            raise QueryError("search text must be 1-200 characters")
        if _RSID_RE.match(text):
            return "rsid", self.rsid(text, heads=heads, limit=limit)
        try:
            parse_variant_id(text)
            return "variant", self.lookup(text, heads=heads)
        except (ValueError, QueryError):
            pass
        if ":" in text:
            return "region", self.region(text, limit=limit, max_bp=max_bp, heads=heads)
        return "gene", self.gene(text, limit=limit, heads=heads)

    def query(self, variant: str | None = None, *, region: str | None = None, gene: str | None = None,
              rsid: str | None = None, top: int | None = None, min_score: float | None = None,
              max_score: float | None = None, zero_based: bool = False, heads: bool | list[str] = True,
              limit: int | None = None) -> pd.DataFrame:
        """One look-up, as a DataFrame (mirrors ``biointerp db query``). Give exactly one of
        ``variant``, ``region``, ``gene``, ``rsid``."""
        return self.query_result(variant, region=region, gene=gene, rsid=rsid, top=top, min_score=min_score,
                                 max_score=max_score, zero_based=zero_based, heads=heads, limit=limit).frame()

    def query_result(self, variant: str | None = None, *, region: str | None = None, gene: str | None = None,
                     rsid: str | None = None, top: int | None = None, min_score: float | None = None,
                     max_score: float | None = None, zero_based: bool = False, heads: bool | list[str] = True,
                     limit: int | None = None) -> Result:
        """:meth:`query` as a :class:`Result` (no pandas)."""
        given = [k for k, v in dict(variant=variant, region=region, gene=gene, rsid=rsid).items() if v]
        if len(given) != 1:
            raise QueryError(f"give exactly one of variant, region, gene, rsid (got {given or 'none'})")
        if variant:
            res = self.lookup(variant, zero_based=zero_based, heads=heads)
            if min_score is not None or max_score is not None:
                j = res.columns.index("score")

                def keep(s) -> bool:  # a missing (NULL/NaN) score passes no bound
                    return s is not None and s == s and (min_score is None or s >= min_score) \
                        and (max_score is None or s <= max_score)

                res = Result(res.columns, [r for r in res.rows if keep(r[j])], res.truncated)
            return res
        if region:
            return self.region(region, min_score=min_score, max_score=max_score, limit=limit, heads=heads)
        if gene:
            return self.gene(gene, top=top, min_score=min_score, max_score=max_score, limit=limit, heads=heads)
        return self.rsid(rsid, heads=heads, limit=RSID_LIMIT if limit is None else limit)

    def head_info(self, heads: bool | list[str] = True) -> pd.DataFrame:
        """Metadata of head columns: ``column_name, head, view, display, group, description, category,
        kind, threshold`` (from the release's ``heads.feather``; empty fields where it has none)."""
        names = self._head_list(heads)
        cols = ["column_name", "head", "view", "display", "group", "description", "category", "kind", "threshold"]
        try:
            rows = self._run(f"SELECT {', '.join(q(c) for c in cols)} FROM heads_meta ORDER BY idx", []).rows
        except duckdb.Error:  # narrow databases have no heads_meta table
            rows = [(h, h, "", None, None, None, None, None, None) for h in self.heads]
        keep = set(names)
        return Result(cols, [r for r in rows if r[0] in keep]).frame()

    def profile(self, variant_id: str, zero_based: bool = False, heads: bool | list[str] = True) -> pd.DataFrame:
        """One variant's head values in long form, one row per head column, with the head metadata
        (display name, group, description, category, threshold) beside each value."""
        res = self.lookup(variant_id, zero_based=zero_based, heads=heads)
        info = self.head_info(heads)
        if not res.rows:
            return info.iloc[0:0].assign(variant_id=[], value=[])
        rec = res.records()[0]
        info.insert(0, "variant_id", rec["variant_id"])
        info.insert(2, "value", [rec.get(c) for c in info["column_name"]])
        return info

    def count(self) -> int:
        return self._run("SELECT count(*) FROM variants", []).rows[0][0]

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
        while not self._pool.empty():
            self._pool.get_nowait().close()
        self._con.close()
        tmp = getattr(self, "_cleanup", None)
        if tmp is not None:  # temporary database built from Parquet by biointerp.db.open
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)

    def __enter__(self) -> VariantDB:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_db(path: str | Path) -> VariantDB:
    """Open a variant database read-only."""
    return VariantDB(path)
