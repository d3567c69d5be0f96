"""Input schema mapping for ``biointerp db build``.

Three kinds of input are recognised from their column names alone:

``ours``   our scores tables flattened by :func:`biointerp.tables.scores_frame`
           (``.h5ad`` or Parquet): ``variant_id, chrom, pos`` (1-based), ``ref,
           alt, gene, consequence, label, status, status_detail, split`` and one
           numeric column per score.
``evee``   EVEE's released Parquet shards: ``variant_id`` with a **0-based**
           position (``chr17:43045711:T:C`` is VCF position 43,045,712), no
           ``pos`` column, ClinVar significance and label, ``pathogenicity`` and
           thousands of head columns ``score_*``, ``ref_score_*``,
           ``var_score_*``, ``gt_*``.
``table``  any other table holding either ``chrom/pos/ref/alt`` (1-based) or a
           1-based ``variant_id``.

Mapping onto the database columns (first alias found wins, case-insensitive):

==========================  ==================================================
database column             input aliases
==========================  ==================================================
chrom, pos, ref, alt        chrom|chromosome|chr|#chrom, pos|position, ref, alt
                            — else parsed from ``variant_id`` (0-based for
                            ``evee`` unless told otherwise)
id                          id (the VCF ``ID`` as it was, any scheme)
rsid                        rsid|rs_id|rsids|dbsnp|dbsnp_id
gene                        gene|gene_name|gene_symbol|symbol
consequence                 consequence|most_severe_consequence|csq|effect
clinvar_significance        clinvar_significance|clinical_significance|
                            significance|clnsig|clinvar_sig
label                       label|clinvar_label|class; numeric 1/0 (or
                            true/false) becomes ``pathogenic``/``benign``
status, status_detail       status, status_detail (default ``ok``, ``""``)
split                       split
score                       ``score_column`` if given, else the first of
                            pathogenicity|score|delta_ll, else the first head
heads                       every other numeric column (optionally filtered
                            by glob patterns), names kept as they are
==========================  ==================================================

Scores of rows whose status is not ``ok`` and NaN scores are stored as NULL.
Columns that are neither mapped nor numeric are listed in the metadata
(``ignored_columns``), never silently merged into something else.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence

EVEE_HEAD_PREFIXES = ("score_", "ref_score_", "var_score_", "gt_")
SCORE_CANDIDATES = ("pathogenicity", "score", "delta_ll")

ALIASES: dict[str, tuple[str, ...]] = {
    "variant_id": ("variant_id", "variant", "id_variant"),
    "chrom": ("chrom", "chromosome", "chr", "#chrom", "contig"),
    "pos": ("pos", "position"),
    "ref": ("ref", "ref_allele", "reference"),
    "alt": ("alt", "alt_allele", "alternate"),
    "id": ("id",),
    "rsid": ("rsid", "rs_id", "rsids", "dbsnp", "dbsnp_id"),
    "gene": ("gene", "gene_name", "gene_symbol", "symbol"),
    "consequence": ("consequence", "most_severe_consequence", "csq", "effect"),
    "clinvar_significance": ("clinvar_significance", "clinical_significance", "significance", "clnsig", "clinvar_sig"),
    "label": ("label", "clinvar_label", "class"),
    "status": ("status",),
    "status_detail": ("status_detail",),
    "split": ("split",),
}

#: Database columns in order (``key`` and the two ids are computed at build).
TEXT_COLUMNS = ["id", "rsid", "gene", "consequence", "clinvar_significance", "label", "status", "status_detail", "split"]
BASE_COLUMNS = ["variant_id", "variant_id0", "chrom", "pos", "ref", "alt", *TEXT_COLUMNS, "score"]

_NUMERIC = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER",
            "UBIGINT", "FLOAT", "DOUBLE", "REAL", "DECIMAL")


def is_numeric(dtype: str) -> bool:
    """True for DuckDB numeric type names (``FLOAT``, ``DECIMAL(9,3)``...)."""
    return str(dtype).upper().startswith(_NUMERIC)


def detect_kind(columns: Sequence[str]) -> str:
    """``"evee"``, ``"ours"`` or ``"table"`` from column names."""
    low = {c.lower() for c in columns}
    if "variant_id" in low and any(c.lower().startswith(EVEE_HEAD_PREFIXES) for c in columns):
        # EVEE's shards (the release also carries chrom/pos columns beside the 0-based id)
        return "evee"
    if {"variant_id", "chrom", "pos", "ref", "alt", "status"} <= low:
        return "ours"
    return "table"


def _find(columns: Sequence[str], field: str) -> str | None:
    low = {c.lower(): c for c in columns}
    for a in ALIASES[field]:
        if a in low:
            return low[a]
    return None


def q(name: str) -> str:
    """Quote an SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def map_columns(
    schema: Mapping[str, str],
    kind: str | None = None,
    zero_based: bool | None = None,
    score_column: str | None = None,
    heads: Sequence[str] | None = None,
    score_names: Sequence[str] | None = None,
) -> dict:
    """Plan the SELECT that maps an input relation onto the database schema.

    Parameters
    ----------
    schema
        ``column -> DuckDB type`` of the input relation.
    kind
        Force ``"evee"``/``"ours"``/``"table"``; detected when ``None``.
    zero_based
        Whether ``variant_id`` positions are 0-based (default: only for EVEE).
    score_column
        Input column used as the primary ``score``.
    heads
        Glob patterns selecting head columns (default: every numeric column).
    score_names
        When known (AnnData ``var_names``), only these columns are scores/heads;
        other numeric columns (``record``, ``alt_index``...) are not.

    Returns
    -------
    dict with ``kind``, ``select`` (list of SQL expressions aliased to database
    columns, ``status`` first-class), ``heads`` (``name -> type``),
    ``score_source`` and ``ignored`` columns.
    """
    cols = list(schema)
    kind = kind or detect_kind(cols)
    if zero_based is None:
        zero_based = kind == "evee"
    found = {f: _find(cols, f) for f in ALIASES}
    used = {c for c in found.values() if c}
    sel: dict[str, str] = {}
    if kind == "evee" and found["variant_id"]:
        # the id is authoritative for EVEE (its position convention is explicit); the release's own
        # chrom/pos/ref/alt columns are then redundant and are neither heads nor ignored
        pass
    elif found["chrom"] and found["pos"] and found["ref"] and found["alt"]:
        sel["chrom"] = f"CAST({q(found['chrom'])} AS VARCHAR)"
        sel["pos"] = f"CAST({q(found['pos'])} AS INTEGER)"
        sel["ref"] = f"upper(CAST({q(found['ref'])} AS VARCHAR))"
        sel["alt"] = f"upper(CAST({q(found['alt'])} AS VARCHAR))"
    if "chrom" in sel:
        pass
    elif found["variant_id"]:
        # chrom may itself hold ':'-free names; split on the last three separators.
        v = f"regexp_extract(CAST({q(found['variant_id'])} AS VARCHAR), " \
            r"'^\s*(.+?)[:_-](\d+)[:_-]([A-Za-z*.]+)[:_>/-]([A-Za-z*.,<>]+)\s*$', ['c','p','r','a'])"
        shift = 1 if zero_based else 0
        sel["chrom"] = f"({v}).c"
        sel["pos"] = f"CAST(({v}).p AS INTEGER) + {shift}"
        sel["ref"] = f"upper(({v}).r)"
        sel["alt"] = f"upper(({v}).a)"
    else:
        raise ValueError(
            f"input has neither chrom/pos/ref/alt nor variant_id columns (columns: {cols[:12]}...)"
        )
    for f in TEXT_COLUMNS:
        c = found[f]
        if f == "label" and c is not None:
            raw = f"lower(trim(CAST({q(c)} AS VARCHAR)))"
            sel[f] = (f"CASE WHEN {raw} IN ('1','1.0','true') THEN 'pathogenic' "
                      f"WHEN {raw} IN ('0','0.0','false') THEN 'benign' ELSE CAST({q(c)} AS VARCHAR) END")
        elif f == "status":
            sel[f] = f"coalesce(CAST({q(c)} AS VARCHAR), 'ok')" if c else "'ok'"
        elif f == "status_detail":
            sel[f] = f"coalesce(CAST({q(c)} AS VARCHAR), '')" if c else "''"
        else:
            sel[f] = f"nullif(CAST({q(c)} AS VARCHAR), '')" if c else "CAST(NULL AS VARCHAR)"
    wanted = None if score_names is None else set(score_names)
    numeric = [c for c in cols if c not in used and is_numeric(schema[c])
               and c.lower() not in ("record", "input_pos", "alt_index")
               and (wanted is None or c in wanted)]
    if score_column is not None:
        if score_column not in schema:
            raise ValueError(f"score column {score_column!r} not in input (columns: {cols[:12]}...)")
        score_src: str | None = score_column
    else:
        low = {c.lower(): c for c in numeric}
        score_src = next((low[s] for s in SCORE_CANDIDATES if s in low), numeric[0] if numeric else None)
    head_cols = [c for c in numeric if c != score_src]
    if heads is not None:
        head_cols = [c for c in head_cols if any(fnmatch.fnmatchcase(c, p) for p in heads)]
    reserved = {c.lower() for c in BASE_COLUMNS} | {"key"}
    head_names: dict[str, str] = {}
    seen: set[str] = set()
    for c in head_cols:
        name = f"head_{c}" if c.lower() in reserved else c
        if name.lower() in seen:
            raise ValueError(f"head columns {name!r} clash (column names are case-insensitive in the database)")
        seen.add(name.lower())
        head_names[c] = name

    def nan_null(c: str) -> str:
        t = schema[c].upper()
        x = q(c)
        if t.startswith(("FLOAT", "DOUBLE", "REAL")):
            x = f"CASE WHEN isnan({x}) THEN NULL ELSE {x} END"
        return f"CASE WHEN status_ok THEN {x} END"

    sel["score"] = nan_null(score_src) if score_src else "CAST(NULL AS FLOAT)"
    head_sel = {head_names[c]: nan_null(c) for c in head_names}
    ignored = [c for c in cols if c not in used and c not in head_names and c != score_src]
    id_only = kind == "evee" and found["variant_id"]
    skip = {found[f] for f in ("chrom", "pos", "ref", "alt")} if id_only else set()
    read = [c for c in cols if (c in used and c not in skip) or c == score_src]
    return {
        "read": read,
        "head_sources": {head_names[c]: c for c in head_names},
        "kind": kind,
        "zero_based": zero_based,
        "select": sel,
        "heads": head_sel,
        "head_types": {head_names[c]: _float_type(schema[c]) for c in head_names},
        "score_source": score_src,
        "score_type": _float_type(schema[score_src]) if score_src else "FLOAT",
        "ignored": ignored,
    }


def _float_type(t: str) -> str:
    t = t.upper()
    return "FLOAT" if t in ("FLOAT", "REAL") else "DOUBLE"


GRCH38_LENGTHS = {
    **dict(zip([str(i) for i in range(1, 23)],
               [248956422, 242193529, 198295559, 190214555, 181538259, 170805979, 159345973, 145138636,
                138394717, 133797422, 135086622, 133275309, 114364328, 107043718, 101991189, 90338345,
                83257441, 80373285, 58617616, 64444167, 46709983, 50818468])),
    "X": 156040895, "Y": 57227415, "M": 16569,
}


def synthetic_evee(n: int, n_heads: int = 64, seed: int = 0, extra_views: int = 2):
    """A synthetic table with the EVEE release schema (for tests and benchmarks).

    ``n`` rows over GRCh38-sized contigs ``chr1..chr22, chrX, chrY, chrM``; 0-based
    ``variant_id``; genes are runs of ~200 consecutive variants; about 10% of
    sites carry a second ALT; half the rows have an ``rsid``. Columns:
    variant_id, gene, consequence, clinical_significance, label (1/0), rsid,
    pathogenicity, ``score_0..score_{n_heads-1}``, and ``extra_views`` each of
    ``ref_score_*``, ``var_score_*``, ``gt_*``. Returns a ``pyarrow.Table``.
    """
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    names = list(GRCH38_LENGTHS)
    lens = np.array([GRCH38_LENGTHS[c] for c in names], dtype=np.float64)
    n_sites = max(1, int(round(n / 1.1)))
    counts = np.floor(lens / lens.sum() * n_sites).astype(np.int64)
    counts[0] += n_sites - counts.sum()
    ci_parts, pos_parts = [], []
    for i, (c, k) in enumerate(zip(names, counts)):
        if k == 0:
            continue
        k = min(int(k), GRCH38_LENGTHS[c] - 2)
        p = np.sort(rng.choice(GRCH38_LENGTHS[c] - 1, size=k, replace=False)) if k < 5_000_000 else None
        ci_parts.append(np.full(k, i, dtype=np.int16))
        pos_parts.append(p.astype(np.int64))
    ci, pos0 = np.concatenate(ci_parts), np.concatenate(pos_parts)
    bases = np.array(list("ACGT"))
    ref_i = rng.integers(0, 4, len(ci))
    alt_i = (ref_i + rng.integers(1, 4, len(ci))) % 4
    extra = np.sort(rng.choice(len(ci), size=n - len(ci), replace=False)) if n > len(ci) else np.zeros(0, np.int64)
    alt2 = (alt_i[extra] + 1) % 4
    alt2 = np.where(alt2 == ref_i[extra], (alt2 + 1) % 4, alt2)
    order = np.argsort(np.concatenate([np.arange(len(ci)), extra]), kind="stable")
    ci = np.concatenate([ci, ci[extra]])[order][:n]
    pos0 = np.concatenate([pos0, pos0[extra]])[order][:n]
    ref_i = np.concatenate([ref_i, ref_i[extra]])[order][:n]
    alt_i = np.concatenate([alt_i, alt2])[order][:n]
    chrom = np.array(["chr" + c for c in names])[ci]
    vid = np.char.add(np.char.add(np.char.add(np.char.add(chrom, ":"), pos0.astype(str)), ":"),
                      np.char.add(np.char.add(bases[ref_i], ":"), bases[alt_i]))
    gene_i = np.arange(n) // 200
    label = rng.integers(0, 2, n)
    sig = np.array(["Benign", "Pathogenic", "Likely_benign", "Likely_pathogenic"])[label + 2 * rng.integers(0, 2, n)]
    csq = np.array(["missense_variant", "synonymous_variant", "intron_variant", "stop_gained", "splice_donor_variant"])
    rs = np.where(rng.random(n) < 0.5, np.char.add("rs", (np.arange(n) + 1000).astype(str)), None)
    cols = {
        "variant_id": pa.array(vid.tolist()),
        "gene": pa.array(np.char.add("GENE", gene_i.astype(str)).tolist()).dictionary_encode(),
        "consequence": pa.array(csq[rng.integers(0, len(csq), n)].tolist()).dictionary_encode(),
        "clinical_significance": pa.array(sig.tolist()).dictionary_encode(),
        "label": pa.array(label.astype(np.int8)),
        "rsid": pa.array(rs.tolist(), type=pa.string()),
        "pathogenicity": pa.array(rng.random(n, dtype=np.float32)),
    }
    for j in range(n_heads):
        cols[f"score_{j}"] = pa.array(rng.standard_normal(n, dtype=np.float32))
    for pre in ("ref_score_", "var_score_", "gt_"):
        for j in range(extra_views):
            cols[f"{pre}{j}"] = pa.array(rng.standard_normal(n, dtype=np.float32))
    return pa.table(cols)
