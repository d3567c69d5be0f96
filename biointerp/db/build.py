"""Build the embedded variant database (DuckDB) and its exports.

Layout of the database file (schema version 1):

``variants``  one row per input row, sorted by ``key = contig_rank << 32 | pos``
              then ref, alt. Columns: ``key, variant_id`` (canonical 1-based),
              ``variant_id0`` (EVEE 0-based form), chrom, pos, ref, alt, ``id`` (the
              input's VCF ID as it was, any scheme; older databases lack it), rsid,
              gene, consequence, clinvar_significance, label, status,
              status_detail, split, ``score`` and ``heads``: all head columns
              packed in one fixed-size ``FLOAT[n]`` (or ``DOUBLE[n]``) array,
              names in ``metadata.heads`` (a point look-up then fetches 17
              columns, not thousands). An ART index on the integer ``key``
              answers exact look-ups; the sort order gives zone-map pruning
              for regions.
``variants_wide``  view with one column per head (for SQL users and exports).
``genes``     gene -> (chrom, key_start, key_end, n): a gene query becomes a
              key-range scan of the sorted table.
``rsids``     rsid -> key, sorted by rsid.
``contigs``   chrom, rank, n, first/last position.
``metadata``  key -> JSON value: provenance (versions, build date, inputs with
              sha256 fingerprints, model, probe, score source, heads).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path

import duckdb

from biointerp.db.evee import BASE_COLUMNS, map_columns, q

SCHEMA_VERSION = 1


def contig_rank(name: str) -> int:
    """Natural contig order: 1..22, X, Y, M/MT, then others (ranked later by name)."""
    bare = re.sub(r"^chr", "", name, flags=re.IGNORECASE)
    if bare.isdigit():
        return int(bare)
    return {"X": 23, "Y": 24, "M": 25, "MT": 25}.get(bare.upper(), 1000)


def _expand_inputs(inputs: Sequence[str | Path]) -> list[Path]:
    out: list[Path] = []
    for p in map(Path, inputs):
        if p.is_dir():
            files = sorted(p.rglob("*.parquet"))
            if not files:
                raise FileNotFoundError(f"{p}: directory holds no *.parquet files")
            out.extend(files)
        elif p.exists():
            out.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such file; pass .h5ad or .parquet scores tables (or a folder of shards)")
    return out


def _register_input(con: duckdb.DuckDBPyConnection, path: Path, name: str) -> dict:
    """Create view ``name`` over one input; return its provenance (kind, rows, uns)."""
    suffix = "".join(path.suffixes[-1:]).lower()
    info: dict = {"path": str(path)}
    if suffix == ".h5ad":
        from biointerp.tables import read_scores, scores_frame

        adata = read_scores(path)
        df = scores_frame(adata, obs_columns=list(adata.obs.columns))
        con.register(name + "_df", df)
        con.execute(f"CREATE TEMP VIEW {name} AS SELECT * FROM {name}_df")
        info["provenance"] = json.loads(json.dumps(dict(adata.uns.get("biointerp", {})), default=str))
        info["score_names"] = [str(v) for v in adata.var_names]
    elif suffix == ".parquet":
        con.execute(f"CREATE TEMP VIEW {name} AS SELECT * FROM read_parquet({_lit(str(path))})")
    else:
        raise ValueError(f"{path}: unsupported input type {suffix!r}; use .h5ad or .parquet")
    return info


def _lit(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def build(
    inputs: Sequence[str | Path],
    out: str | Path,
    *,
    score_column: str | None = None,
    heads: Sequence[str] | None = None,
    zero_based: bool | None = None,
    kind: str | None = None,
    model: str | None = None,
    probe: str | None = None,
    description: str | None = None,
    overwrite: bool = False,
    fingerprint: bool = True,
    progress: bool = False,
) -> dict:
    """Build a DuckDB variant database from scores tables.

    Parameters
    ----------
    inputs
        ``.h5ad`` scores tables, Parquet files (ours or EVEE shards) or folders
        of Parquet shards. Mapping rules: :mod:`biointerp.db.evee`.
    out
        Database file to write (written to ``out + ".tmp"`` then renamed).
    score_column, heads, zero_based, kind
        See :func:`biointerp.db.evee.map_columns` (applied to every input).
    model, probe, description
        Provenance recorded in the ``metadata`` table.
    overwrite
        Replace an existing ``out``.
    fingerprint
        Record sha256 fingerprints of the inputs (reads every byte once).

    Returns
    -------
    The metadata dict stored in the database (``n_rows``, ``heads``, ``inputs``...).
    """
    from tqdm.auto import tqdm

    from biointerp import __version__
    from biointerp.tables import file_fingerprint

    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass overwrite=True (CLI: --force) to replace it")
    files = _expand_inputs(inputs)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    for p in (tmp, Path(str(tmp) + ".wal")):
        if p.exists():
            p.unlink()
    con = duckdb.connect(str(tmp))
    con.execute("SET enable_progress_bar = false")
    steps = tqdm(total=len(files) + 5, desc="db build", unit="step", disable=not progress)
    try:
        selects, infos, all_heads = [], [], {}
        score_sources, score_types = set(), set()
        for i, path in enumerate(files):
            name = f"src_{i}"
            info = _register_input(con, path, name)
            schema = dict(con.execute(f"SELECT column_name, column_type FROM (DESCRIBE {name})").fetchall())
            plan = map_columns(schema, kind=kind, zero_based=zero_based, score_column=score_column, heads=heads,
                               score_names=info.pop("score_names", None))
            status_col = next((c for c in schema if c.lower() == "status"), None)
            ok = f"coalesce(CAST({q(status_col)} AS VARCHAR), 'ok') = 'ok'" if status_col else "TRUE"
            exprs = [f"{e} AS {q(k)}" for k, e in plan["select"].items()]
            exprs += [f"{e} AS {q(k)}" for k, e in plan["heads"].items()]
            exprs.append(f"CAST({i} AS SMALLINT) AS source")
            selects.append(f"SELECT {', '.join(exprs)} FROM (SELECT *, {ok} AS status_ok FROM {name})")
            for h, t in plan["head_types"].items():
                all_heads[h] = "DOUBLE" if all_heads.get(h) == "DOUBLE" else t
            if plan["score_source"]:
                score_sources.add(plan["score_source"])
            score_types.add(plan["score_type"])
            info.update(kind=plan["kind"], zero_based_ids=plan["zero_based"], score_source=plan["score_source"],
                        n_heads=len(plan["heads"]), ignored_columns=plan["ignored"])
            if fingerprint:
                info["sha256_16"] = file_fingerprint(path)
            infos.append(info)
            steps.update()
        union = " UNION ALL BY NAME ".join(f"({s})" for s in selects)
        con.execute(f"CREATE TEMP TABLE staged AS {union}")
        for i, info in enumerate(infos):
            info["rows"] = con.execute("SELECT count(*) FROM staged WHERE source = ?", [i]).fetchone()[0]
        bad = con.execute(
            "SELECT count(*) FROM staged WHERE chrom IS NULL OR pos IS NULL OR ref IS NULL OR alt IS NULL"
        ).fetchone()[0]
        if bad:
            ex = con.execute("SELECT * FROM staged WHERE chrom IS NULL OR pos IS NULL LIMIT 1").fetchone()
            raise ValueError(f"{bad} input rows have no parsable chrom/pos/ref/alt (e.g. {ex[:4]}); check the id column")
        _rank_contigs(con)
        steps.update()
        score_type = "DOUBLE" if "DOUBLE" in score_types else "FLOAT"
        head_type = "DOUBLE" if "DOUBLE" in all_heads.values() else "FLOAT"
        head_expr = (f", [{', '.join(f'CAST({q(h)} AS {head_type})' for h in all_heads)}]::{head_type}[{len(all_heads)}]"
                     " AS heads") if all_heads else ""
        _create_variants(con, score_type, head_expr)
        wide = "".join(f", heads[{j + 1}] AS {q(h)}" for j, h in enumerate(all_heads))
        con.execute(f"CREATE VIEW variants_wide AS SELECT * {'EXCLUDE (heads)' if all_heads else ''}{wide} "
                    "FROM variants")
        steps.update()
        con.execute("CREATE INDEX variants_key_idx ON variants (key)")
        steps.update()
        _create_lookup_tables(con)
        steps.update()
        n_rows = con.execute("SELECT count(*) FROM variants").fetchone()[0]
        n_dup = con.execute(
            "SELECT count(*) FROM (SELECT variant_id FROM variants GROUP BY 1 HAVING count(*) > 1)").fetchone()[0]
        meta = {
            "schema_version": SCHEMA_VERSION,
            "biointerp_version": __version__,
            "duckdb_version": duckdb.__version__,
            "build_date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "n_rows": n_rows,
            "n_duplicate_ids": n_dup,
            "score_source": sorted(score_sources),
            "heads": list(all_heads),
            "head_type": head_type if all_heads else None,
            "columns": [*BASE_COLUMNS, *all_heads],
            "model": model or _common(infos, "model"),
            "probe": probe or _common(infos, "probe"),
            "description": description,
            "id_convention": "variant_id: chrom:pos:ref:alt, 1-based VCF pos; variant_id0: 0-based pos (EVEE)",
            "inputs": infos,
        }
        con.execute("CREATE TABLE metadata (key VARCHAR PRIMARY KEY, value VARCHAR)")
        con.executemany("INSERT INTO metadata VALUES (?, ?)", [(k, json.dumps(v, default=str)) for k, v in meta.items()])
        con.execute("CHECKPOINT")
        steps.update()
    except BaseException:
        con.close()
        tmp.unlink(missing_ok=True)
        raise
    finally:
        steps.close()
    con.close()
    os.replace(tmp, out)
    return meta


def _create_variants(con: duckdb.DuckDBPyConnection, score_type: str, extra: str = "") -> None:
    """``variants`` from temp table ``staged`` (+ ``contigs``): key, ids, base columns, score, ``extra``."""
    con.execute(f"""
        CREATE TABLE variants AS
        SELECT CAST(c.rank AS BIGINT) * 4294967296 + s.pos AS key,
               s.chrom || ':' || s.pos || ':' || s.ref || ':' || s.alt AS variant_id,
               s.chrom || ':' || (s.pos - 1) || ':' || s.ref || ':' || s.alt AS variant_id0,
               s.chrom, s.pos, s.ref, s.alt, s.id, s.rsid, s.gene, s.consequence, s.clinvar_significance,
               s.label, s.status, s.status_detail, s.split, CAST(s.score AS {score_type}) AS score
               {extra}
        FROM staged s JOIN contigs c USING (chrom)
        ORDER BY key, s.ref, s.alt, s.source""")
    con.execute("DROP TABLE staged")


def _create_lookup_tables(con: duckdb.DuckDBPyConnection) -> None:
    """``genes`` (key spans), ``rsids`` and per-contig counts, from ``variants``."""
    con.execute("""
        CREATE TABLE genes AS
        SELECT gene, upper(gene) AS gene_upper, chrom, min(key) AS key_start, max(key) AS key_end,
               min(pos) AS start, max(pos) AS "end", count(*) AS n_variants, count(score) AS n_scored
        FROM variants WHERE gene IS NOT NULL GROUP BY gene, chrom ORDER BY gene_upper""")
    con.execute("""
        CREATE TABLE rsids AS
        SELECT DISTINCT lower(trim(r)) AS rsid, key FROM (
            SELECT unnest(string_split(rsid, ';')) AS r, key FROM variants WHERE rsid IS NOT NULL)
        WHERE trim(r) <> '' ORDER BY rsid""")
    con.execute("""
        CREATE OR REPLACE TABLE contigs AS
        SELECT c.chrom, c.rank, count(*) AS n, min(v.pos) AS first_pos, max(v.pos) AS last_pos
        FROM contigs c JOIN variants v USING (chrom) GROUP BY c.chrom, c.rank ORDER BY c.rank""")


def _rank_contigs(con: duckdb.DuckDBPyConnection) -> None:
    """Table ``contigs (chrom, rank)`` for the contigs of temp table ``staged``."""
    chroms = [r[0] for r in con.execute("SELECT DISTINCT chrom FROM staged").fetchall()]
    ranked = sorted(chroms, key=lambda c: (contig_rank(c), c))
    ranks = {c: (contig_rank(c) if contig_rank(c) < 1000 else 1000 + i) for i, c in enumerate(ranked)}
    con.execute("CREATE TABLE contigs (chrom VARCHAR, rank INTEGER)")
    con.executemany("INSERT INTO contigs VALUES (?, ?)", list(ranks.items()))


def _common(infos: list[dict], field: str):
    vals = {json.dumps(i.get("provenance", {}).get(field)) for i in infos if i.get("provenance", {}).get(field)}
    return json.loads(vals.pop()) if len(vals) == 1 else (sorted(vals) or None)


def _need_narrow(db_path: str | Path) -> None:
    con = duckdb.connect(str(db_path), read_only=True)
    try:
        row = con.execute("SELECT value FROM metadata WHERE key = 'layout'").fetchall()
    finally:
        con.close()
    if row and json.loads(row[0][0]) == "wide":
        raise ValueError(f"{db_path} is a wide-layout index (heads stay in the release's shards); "
                         "exports need a narrow build (`db build --layout narrow`)")


def export_parquet(db_path: str | Path, out_dir: str | Path, *, overwrite: bool = False) -> Path:
    """Write ``variants`` as Parquet partitioned by chromosome (``out_dir/chrom=17/*.parquet``).

    Each file keeps the ``chrom`` column, rows sorted by position.
    """
    _need_narrow(db_path)
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise FileExistsError(f"{out_dir} is not empty; pass overwrite=True (CLI: --force)")
    con = duckdb.connect(str(db_path), read_only=True)
    con.execute("SET enable_progress_bar = false")
    try:
        opt = ", OVERWRITE_OR_IGNORE" if overwrite else ""
        con.execute(
            f"COPY (SELECT * EXCLUDE (key) FROM variants_wide ORDER BY key, ref, alt) TO {_lit(str(out_dir))} "
            f"(FORMAT parquet, PARTITION_BY (chrom), WRITE_PARTITION_COLUMNS true{opt})"
        )
    finally:
        con.close()
    return out_dir


def export_tsv(
    db_path: str | Path, out: str | Path, *, heads: Sequence[str] | None = None, overwrite: bool = False
) -> Path:
    """Write a bgzip-compressed, tabix-indexed TSV ``#chrom pos ref alt score label gene variant_id status heads…``.

    ``heads`` selects head columns (default: all). Missing values are ``.``.
    Returns the ``.gz`` path (its ``.tbi`` sits beside it).
    """
    import fnmatch

    import pysam

    _need_narrow(db_path)
    out = Path(out)
    if not out.name.endswith(".gz"):
        out = out.with_name(out.name + ".gz")
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass overwrite=True (CLI: --force)")
    con = duckdb.connect(str(db_path), read_only=True)
    con.execute("SET enable_progress_bar = false")
    try:
        all_heads = json.loads(con.execute("SELECT value FROM metadata WHERE key = 'heads'").fetchone()[0])
        keep = all_heads if heads is None else [h for h in all_heads if any(fnmatch.fnmatchcase(h, p) for p in heads)]
        cols = ", ".join(q(h) for h in keep)
        plain = out.with_name(out.name[:-3])
        con.execute(
            f"COPY (SELECT chrom AS \"#chrom\", pos, ref, alt, score, label, gene, variant_id, status"
            f"{', ' + cols if cols else ''} FROM variants_wide ORDER BY key, ref, alt) TO {_lit(str(plain))} "
            "(FORMAT csv, DELIMITER '\t', HEADER true, NULLSTR '.', QUOTE '')"
        )
    finally:
        con.close()
    # htslib's BGZF writer with large writes (libdeflate) is far faster than tabix_compress.
    # Level 1: random-looking float columns compress ~6x slower at the default level for ~1.3x size.
    with open(plain, "rb") as src, pysam.BGZFile(str(out), "wb1") as dst:
        while block := src.read(1 << 26):
            dst.write(block)
    plain.unlink()
    pysam.tabix_index(str(out), seq_col=0, start_col=1, end_col=1, meta_char="#", force=True)
    return out
