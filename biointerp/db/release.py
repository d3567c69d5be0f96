"""EVEE-shaped releases: locate one (shards + manifest + head metadata) and generate synthetic ones.

EVEE's public release (``goodfire-ai/evee-manuscript`` README) is one row per
ClinVar variant (4.25M rows), the Evo 2 ``pathogenicity`` score and ~4,900
further columns, as five chromosome-balanced Parquet shards
``clean_shard_0.parquet`` … ``clean_shard_4.parquet`` plus a ``manifest.json``;
head metadata (``head, category, kind, n_classes, group, display, description,
predictor_threshold`` …, 707 rows) is ``artifacts/heads.feather``.

What the public repository does not show is the shards' exact column list. The
synthetic release here follows what it does show: the metadata columns are the
``category == "metadata"`` heads of ``heads.feather`` (``variant_id`` with a
0-based position, ``chrom``, ``pos``, ``ref``, ``alt``, ``gene_name``,
``consequence``, ``label``, ``rs_id``, ``clinical_significance``, gnomAD
frequencies …), and every probe head ``h`` (category ``disruption`` /
``effect``) has float32 columns ``score_h``, ``ref_score_h``, ``var_score_h``
and ``gt_h`` (the view prefixes our mapping already recognises); further
synthetic probe heads (group ``Synthetic``) pad the table to the requested
width, 4,906 columns by default. Protein-level heads are NaN for non-coding
variants, ground-truth ``gt_`` columns are mostly NaN, as are gnomAD-style
metadata. The generated ``heads.feather`` lists every head used, in the
release's schema, so head metadata joins work the same on both.
"""

from __future__ import annotations

import fnmatch
import glob
import json
from dataclasses import dataclass, field
from pathlib import Path

HEAD_VIEWS = ("score_", "ref_score_", "var_score_", "gt_")

#: heads.feather column -> Arrow type (as in the release; strings are string_view there).
HEADS_SCHEMA = {
    "head": "str", "category": "str", "kind": "str", "n_classes": "uint16", "group": "str", "display": "str",
    "description": "str", "predictor": "bool", "curated": "bool", "parent": "str", "me_group": "str",
    "predictor_order": "uint8", "predictor_threshold": "float32", "predictor_invert": "bool",
    "predictor_display": "str", "exclude_from_attribution": "bool", "exclude_from_effect_expansion": "bool",
    "role": "str", "tissue_specific": "bool",
}

# Metadata columns every synthetic release has (name -> generator kind).
_KEY_META = {
    "variant_id": "id", "chrom": "chrom", "pos": "pos", "ref": "ref", "alt": "alt", "gene_name": "gene",
    "gene_id": "gene_id", "consequence": "csq", "label": "label", "clinical_significance": "sig",
    "rs_id": "rsid", "review_status": "review", "stars": "small_int", "gene_strand": "strand",
    "gnomad_af": "af", "gnomad_genomes_af": "af", "n_submissions": "small_int", "vep_impact": "impact",
}
_CODING = ("missense_variant", "synonymous_variant", "stop_gained", "frameshift_variant", "inframe_deletion")
_NONCODING = ("intron_variant", "splice_donor_variant", "splice_acceptor_variant", "5_prime_UTR_variant",
              "3_prime_UTR_variant", "upstream_gene_variant")
_CODING_GROUPS = {"Pfam", "InterPro", "Amino Acid", "Protein", "Structure", "PTM", "ELM Motifs", "Substitution"}
# probe groups in about the proportions of heads.feather's 400 probe heads (Pfam 166, InterPro 139, …)
_SYNTH_GROUPS = (["Pfam"] * 8 + ["InterPro"] * 7 + ["Chromatin"] * 2 + ["ChIP-seq"] * 2
                 + ["Other", "Structure", "Amino Acid", "Clinical", "Region", "Protein", "Regulatory", "ATAC-seq",
                    "Splicing", "PTM", "Conservation"])


@dataclass
class Release:
    """A located release: shard paths or URLs (in order), its manifest and head-metadata file."""

    shards: list[str]
    manifest: dict = field(default_factory=dict)
    heads_file: str | None = None

    @property
    def remote(self) -> bool:
        return any(is_remote(s) for s in self.shards)


def is_remote(path: str) -> bool:
    return str(path).startswith(("s3://", "http://", "https://", "gs://"))


def _join(base: str, name: str) -> str:
    if is_remote(name) or Path(name).is_absolute():
        return name
    return base.rstrip("/") + "/" + name


def _manifest_files(manifest: dict) -> list[str]:
    for key in ("shards", "files", "parquet_files", "parts"):
        items = manifest.get(key)
        if isinstance(items, list) and items:
            out = []
            for it in items:
                if isinstance(it, str):
                    out.append(it)
                elif isinstance(it, dict):
                    name = it.get("path") or it.get("file") or it.get("filename") or it.get("name")
                    if name:
                        out.append(str(name))
            if out:
                return out
    return []


def _read_text(url: str) -> str | None:
    from biointerp.db.remote import open_input_file

    try:
        with open_input_file(url) as fh:
            return fh.read().decode()
    except (FileNotFoundError, OSError):
        return None


def locate(source: str | Path, heads_file: str | Path | None = None) -> Release:
    """Find a release's shards from a folder, a ``manifest.json``, a shard glob or a shard file/URL.

    Folders (local, ``s3://bucket/prefix/`` or ``https://host/path/``) are read through their
    ``manifest.json`` when they have one (its ``shards``/``files`` list), else ``*.parquet`` in
    name order (local and s3 only: https has no listing). ``heads_file`` defaults to
    ``heads.feather`` beside the shards or in ``artifacts/``.
    """
    src = str(source)
    manifest: dict = {}
    base = src
    shards: list[str] = []
    if src.endswith(".json"):
        text = _read_text(src)
        if text is None:
            raise FileNotFoundError(f"{src}: no such manifest")
        manifest = json.loads(text)
        base = src.rsplit("/", 1)[0] if "/" in src else "."
        shards = [_join(base, f) for f in _manifest_files(manifest)]
        if not shards:
            raise ValueError(f"{src}: manifest lists no shards (expected a 'shards' or 'files' list)")
    elif src.endswith(".parquet") and not any(ch in src for ch in "*?["):
        shards = [src]
        base = src.rsplit("/", 1)[0] if "/" in src else "."
    elif any(ch in src for ch in "*?["):
        base = src.rsplit("/", 1)[0] if "/" in src else "."
        if is_remote(src):
            from biointerp.db.remote import list_files

            pat = src.rsplit("/", 1)[-1]
            shards = [u for u in list_files(base) if fnmatch.fnmatch(u.rsplit("/", 1)[-1], pat)]
        else:
            shards = sorted(glob.glob(src))
        if not shards:
            raise FileNotFoundError(f"{src}: no shard matches the glob")
    else:
        text = _read_text(_join(src, "manifest.json"))
        if text is not None:
            manifest = json.loads(text)
            shards = [_join(src, f) for f in _manifest_files(manifest)]
        if not shards:
            if is_remote(src):
                from biointerp.db.remote import list_files

                shards = [u for u in list_files(src) if u.endswith(".parquet")]
            elif Path(src).is_dir():
                shards = [str(p) for p in sorted(Path(src).glob("*.parquet"))]
            elif not Path(src).exists():
                raise FileNotFoundError(f"{src}: no such file or folder")
        if not shards:
            raise FileNotFoundError(f"{src}: no manifest.json and no *.parquet shards")
    if heads_file is None:
        for cand in (_join(base, "heads.feather"), _join(base, "artifacts/heads.feather")):
            if (is_remote(cand) and _exists_remote(cand)) or (not is_remote(cand) and Path(cand).exists()):
                heads_file = cand
                break
    return Release(shards=shards, manifest=manifest, heads_file=str(heads_file) if heads_file else None)


def _exists_remote(url: str) -> bool:
    from biointerp.db.remote import exists

    return exists(url)


def read_heads(path: str | Path):
    """``heads.feather`` as a list of dicts (one per head), any Arrow string flavour."""
    import pyarrow as pa
    import pyarrow.feather as feather

    from biointerp.db.remote import open_input_file

    with open_input_file(str(path)) as fh:
        t = feather.read_table(pa.BufferReader(fh.read()))
    cols = {}
    for name in t.column_names:
        col = t.column(name)
        if pa.types.is_string_view(col.type) or pa.types.is_large_string(col.type):
            col = col.cast(pa.string())
        cols[name] = col.to_pylist()
    if "head" not in cols:
        raise ValueError(f"{path}: no 'head' column; expected EVEE's heads.feather layout")
    return [dict(zip(cols, vals)) for vals in zip(*cols.values())]


def head_columns_map(columns: list[str], heads: list[dict]) -> dict[str, tuple[str, str]]:
    """Release column -> (head name, view) for the columns that belong to a head of ``heads``."""
    names = {h["head"] for h in heads}
    out = {}
    for c in columns:
        if c in names:
            out[c] = (c, "")
            continue
        for v in HEAD_VIEWS:
            if c.startswith(v) and c[len(v):] in names:
                out[c] = (c[len(v):], v.rstrip("_"))
                break
    return out


# ---------------------------------------------------------------------------------------------
# synthetic releases


def synthetic_heads(width: int = 4906, n_meta: int = 40, heads_file: str | Path | None = None) -> list[dict]:
    """Head metadata rows (heads.feather schema) for a release ``width`` columns wide.

    With ``heads_file`` (EVEE's ``heads.feather``) its names, groups and descriptions are used
    first. ``n_meta`` metadata columns (at least the 18 key columns), then ``pathogenicity``,
    then probe heads with four view columns each, padded with synthetic heads.
    """
    real = read_heads(heads_file) if heads_file else []
    meta = [h for h in real if h.get("category") == "metadata"]
    probes = [h for h in real if h.get("category") != "metadata"]
    out_meta = []
    for name in _KEY_META:
        hit = next((h for h in meta if h["head"] == name), None)
        out_meta.append(hit or _head_row(name, "metadata", None, "Metadata", name.replace("_", " ").title(), ""))
    extra_meta = [h for h in meta if h["head"] not in _KEY_META]
    i = 0
    while len(out_meta) < n_meta:
        if extra_meta:
            out_meta.append(extra_meta.pop(0))
        else:
            out_meta.append(_head_row(f"annotation_{i}", "metadata", None, "Metadata", f"Annotation {i}",
                                      "Synthetic per-variant annotation"))
            i += 1
    n_probe_cols = width - len(out_meta) - 1
    if n_probe_cols < 4:
        raise ValueError(f"width {width} leaves no room for heads after {len(out_meta)} metadata columns")
    n_probe = n_probe_cols // 4 + (1 if n_probe_cols % 4 else 0)
    out_probes = probes[:n_probe]
    j = 0
    while len(out_probes) < n_probe:
        grp = _SYNTH_GROUPS[j % len(_SYNTH_GROUPS)]
        kind = "continuous" if j % 17 == 5 else "categorical" if j % 23 == 7 else "binary"
        row = _head_row(f"probe_{j:04d}", "effect" if kind == "continuous" else "disruption", kind, grp,
                        f"{grp} probe {j}", f"Synthetic {kind} probe over {grp.lower()} annotations")
        if kind == "continuous":
            row.update(predictor=True, predictor_threshold=round(0.1 + 0.8 * ((j * 37) % 100) / 100, 3))
        out_probes.append(row)
        j += 1
    return out_meta + out_probes


def _head_row(name, category, kind, group, display, description) -> dict:
    row = {k: None for k in HEADS_SCHEMA}
    row.update(head=name, category=category, kind=kind, group=group, display=display, description=description,
               n_classes={"binary": 2, "continuous": 16, "categorical": 5}.get(kind), predictor=False,
               curated=category == "metadata", role="display" if category == "metadata" else "probe",
               tissue_specific=False, exclude_from_attribution=False, exclude_from_effect_expansion=False)
    return row


def write_heads(heads: list[dict], path: str | Path) -> Path:
    """Write head metadata rows as Feather in the release's schema (strings as string_view)."""
    import pyarrow as pa
    import pyarrow.feather as feather

    types = {"str": pa.string(), "uint16": pa.uint16(), "uint8": pa.uint8(), "float32": pa.float32(),
             "bool": pa.bool_()}
    arrays = {k: pa.array([h.get(k) for h in heads], type=types[t]) for k, t in HEADS_SCHEMA.items()}
    t = pa.table(arrays)
    try:
        t = t.cast(pa.schema([pa.field(f.name, pa.string_view() if f.type == pa.string() else f.type)
                              for f in t.schema]))
    except (pa.ArrowNotImplementedError, AttributeError):  # older pyarrow: plain strings
        pass
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    feather.write_feather(t, path)
    return path


def release_columns(heads: list[dict], width: int) -> list[tuple[str, str, dict]]:
    """Column plan ``(name, generator kind, head row)`` for a release ``width`` columns wide."""
    cols = []
    for h in heads:
        if h["category"] == "metadata":
            cols.append((h["head"], _KEY_META.get(h["head"], _meta_kind(h["head"])), h))
    cols.append(("pathogenicity", "patho", {}))
    for h in heads:
        if h["category"] != "metadata":
            for v in HEAD_VIEWS:
                if len(cols) < width:
                    cols.append((v + h["head"], v, h))
    return cols


def _meta_kind(name: str) -> str:
    n = name.lower()
    if n.endswith("_af") or "signal" in n or "rate" in n or "shape" in n or "breadth" in n or "loeuf" in n:
        return "af"
    if "count" in n or "number" in n or n.startswith("n_") or "peak" in n:
        return "small_int"
    return "text"


def _sites(n: int, seed: int):
    """Sorted variant sites over GRCh38 contigs: chrom index, 0-based pos, ref, alt, gene index."""
    import numpy as np

    from biointerp.db.evee import GRCH38_LENGTHS

    rng = np.random.default_rng(seed)
    names = list(GRCH38_LENGTHS)
    lens = np.array([GRCH38_LENGTHS[c] for c in names], dtype=np.float64)
    # ClinVar clusters in genes: gene centres spread by length, variants around them (~35 kb spans)
    n_genes = max(1, n // 200)
    g_chrom = rng.choice(len(names), size=n_genes, p=lens / lens.sum())
    g_start = (rng.random(n_genes) * (lens[g_chrom] - 200_000)).astype(np.int64) + 50_000
    g_len = rng.integers(2_000, 70_000, n_genes)
    weight = rng.pareto(1.2, n_genes) + 1
    gi = rng.choice(n_genes, size=n, p=weight / weight.sum())
    ci = g_chrom[gi]
    pos0 = g_start[gi] + (rng.random(n) * g_len[gi]).astype(np.int64)
    # about 10% of sites carry a second ALT: duplicate a position
    dup = rng.random(n) < 0.1
    pos0[1:][dup[1:]] = pos0[:-1][dup[1:]]
    ci[1:][dup[1:]] = ci[:-1][dup[1:]]
    gi[1:][dup[1:]] = gi[:-1][dup[1:]]
    order = np.lexsort((pos0, ci))
    ci, pos0, gi = ci[order], pos0[order], gi[order]
    ref = rng.integers(0, 4, n)
    alt = (ref + rng.integers(1, 4, n)) % 4
    same = np.zeros(n, bool)
    same[1:] = (ci[1:] == ci[:-1]) & (pos0[1:] == pos0[:-1])
    ref[same] = ref[np.flatnonzero(same) - 1]
    for _ in range(3):  # distinct ALTs at a shared position
        clash = np.zeros(n, bool)
        clash[1:] = same[1:] & (alt[1:] == alt[:-1])
        alt[clash] = (alt[clash] + 1) % 4
        alt[alt == ref] = (alt[alt == ref] + 1) % 4
    for _ in range(5):  # no variant twice: move a repeated (site, alleles) one base on
        code = ((ci.astype(np.int64) << 32) + pos0) * 16 + ref * 4 + alt
        _, first = np.unique(code, return_index=True)
        rep = np.ones(n, bool)
        rep[first] = False
        if not rep.any():
            break
        pos0[rep] += 1
        order = np.lexsort((pos0, ci))
        ci, pos0, gi, ref, alt = ci[order], pos0[order], gi[order], ref[order], alt[order]
    return names, ci, pos0, ref, alt, gi


def write_synthetic_release(
    out_dir: str | Path,
    n_rows: int,
    *,
    width: int = 4906,
    n_shards: int = 5,
    n_meta: int = 40,
    heads_file: str | Path | None = None,
    row_group_size: int = 65_536,
    compression: str = "zstd",
    seed: int = 0,
    progress: bool = False,
) -> Release:
    """Write an EVEE-shaped release: ``clean_shard_{i}.parquet``, ``manifest.json``, ``heads.feather``.

    Rows are sorted by chromosome and position; shards hold whole chromosomes, balanced by rows.
    Memory stays at one row-group chunk (``row_group_size`` rows x ``width`` columns).
    """
    import numpy as np
    import pyarrow.parquet as pq
    from tqdm.auto import tqdm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    heads = synthetic_heads(width, n_meta=n_meta, heads_file=heads_file)
    plan = release_columns(heads, width)
    used = {h["head"] for _, _, h in plan if h}
    write_heads([h for h in heads if h["head"] in used], out_dir / "heads.feather")
    names, ci, pos0, ref_i, alt_i, gi = _sites(n_rows, seed)
    # chromosome-balanced shards: whole contigs, cut when a shard reaches n/n_shards rows
    counts = np.bincount(ci, minlength=len(names))
    target = n_rows / n_shards
    bounds, acc, start = [], 0, 0
    for c in range(len(names)):
        acc += counts[c]
        if acc >= target * (len(bounds) + 1) and len(bounds) < n_shards - 1:
            end = int(np.searchsorted(ci, c, side="right"))
            bounds.append((start, end))
            start = end
    bounds.append((start, n_rows))
    bases = np.array(list("ACGT"))
    rng = np.random.default_rng(seed + 1)
    label_p = rng.random(n_rows)
    csq_all = np.array(_CODING + _NONCODING)
    coding_all = rng.random(n_rows) < 0.55
    csq_idx = np.where(coding_all, rng.integers(0, len(_CODING), n_rows),
                       len(_CODING) + rng.integers(0, len(_NONCODING), n_rows))
    shards_meta = []
    bar = tqdm(total=n_rows, desc="synthetic release", unit="row", disable=not progress)
    for s, (a, b) in enumerate(bounds):
        path = out_dir / f"clean_shard_{s}.parquet"
        writer = None
        for lo in range(a, max(b, a + 1), row_group_size):
            hi = min(b, lo + row_group_size)
            if hi <= lo:
                break
            tbl = _chunk(plan, lo, hi, names, ci, pos0, ref_i, alt_i, gi, label_p, csq_all, csq_idx, coding_all,
                         bases, np.random.default_rng([seed, s, lo]))
            if writer is None:
                writer = pq.ParquetWriter(path, tbl.schema, compression=compression)
            writer.write_table(tbl, row_group_size=row_group_size)
            bar.update(hi - lo)
        if writer is None:  # empty shard
            tbl = _chunk(plan, a, a, names, ci, pos0, ref_i, alt_i, gi, label_p, csq_all, csq_idx, coding_all,
                         bases, np.random.default_rng(0))
            writer = pq.ParquetWriter(path, tbl.schema, compression=compression)
            writer.write_table(tbl)
        writer.close()
        shards_meta.append({"path": path.name, "n_rows": int(b - a), "bytes": path.stat().st_size,
                            "chroms": ["chr" + names[c] for c in np.unique(ci[a:b])]})
    bar.close()
    manifest = {"format": "parquet", "description": "synthetic EVEE-shaped release (biointerp)",
                "n_rows": int(n_rows), "n_columns": len(plan), "shards": shards_meta,
                "heads": "heads.feather", "id_convention": "variant_id chrom:pos0:ref:alt, 0-based"}
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return Release(shards=[str(out_dir / m["path"]) for m in shards_meta], manifest=manifest,
                   heads_file=str(out_dir / "heads.feather"))


def _chunk(plan, lo, hi, names, ci, pos0, ref_i, alt_i, gi, label_p, csq_all, csq_idx, coding_all, bases, rng):
    import numpy as np
    import pyarrow as pa

    n = hi - lo
    chrom = np.array(["chr" + c for c in names])[ci[lo:hi]]
    p = pos0[lo:hi]
    coding = coding_all[lo:hi]
    lab = label_p[lo:hi]
    patho = np.where(lab < 0.3, rng.beta(5, 1.5, n), rng.beta(1.2, 6, n)).astype(np.float32)
    cols: dict[str, pa.Array] = {}
    for name, kind, h in plan:
        if kind in HEAD_VIEWS:
            x = rng.random(n, dtype=np.float32)  # column by column: one copy of the chunk in memory
            if kind == "gt_":
                x = np.where(x < 0.12, 1.0, 0.0).astype(np.float32)
                x[rng.random(n, dtype=np.float32) < 0.8] = np.nan
            else:
                x *= x * x  # probe probabilities: most near 0, a tail near 1
                if kind == "var_score_":
                    x = np.clip(x + (patho - 0.5) * 0.1, 0, 1, dtype=np.float32)
                # probes read fp16 activations: values carry ~11 significant bits (float16-rounded float32)
                x = x.astype(np.float16).astype(np.float32)
            if h.get("group") in _CODING_GROUPS:
                x[~coding] = np.nan
            cols[name] = pa.array(x)
        elif kind == "id":
            vid = np.char.add(np.char.add(np.char.add(np.char.add(chrom, ":"), p.astype(str)), ":"),
                              np.char.add(np.char.add(bases[ref_i[lo:hi]], ":"), bases[alt_i[lo:hi]]))
            cols[name] = pa.array(vid.tolist(), type=pa.string())
        elif kind == "chrom":
            cols[name] = pa.array(chrom.tolist(), type=pa.string())
        elif kind == "pos":
            cols[name] = pa.array(p.astype(np.int64))
        elif kind == "ref":
            cols[name] = pa.array(bases[ref_i[lo:hi]].tolist(), type=pa.string())
        elif kind == "alt":
            cols[name] = pa.array(bases[alt_i[lo:hi]].tolist(), type=pa.string())
        elif kind == "gene":
            cols[name] = pa.array(np.char.add("GENE", gi[lo:hi].astype(str)).tolist(), type=pa.string())
        elif kind == "gene_id":
            cols[name] = pa.array(np.char.add("ENSG", (gi[lo:hi] + 10**10).astype(str)).tolist(), type=pa.string())
        elif kind == "csq":
            cols[name] = pa.array(csq_all[csq_idx[lo:hi]].tolist(), type=pa.string())
        elif kind == "label":
            lv = np.where(lab < 0.3, "pathogenic", np.where(lab < 0.75, "benign", "VUS"))
            cols[name] = pa.array(lv.tolist(), type=pa.string())
        elif kind == "sig":
            sv = np.where(lab < 0.3, "Pathogenic", np.where(lab < 0.75, "Benign", "Uncertain_significance"))
            cols[name] = pa.array(sv.tolist(), type=pa.string())
        elif kind == "rsid":
            ids = np.char.add("rs", (np.arange(lo, hi) * 7 + 1000).astype(str))
            cols[name] = pa.array(np.where(rng.random(n) < 0.6, ids, None).tolist(), type=pa.string())
        elif kind == "review":
            cols[name] = pa.array(np.array(["criteria_provided,_single_submitter", "reviewed_by_expert_panel",
                                            "no_assertion_criteria_provided"])[rng.integers(0, 3, n)].tolist(),
                                  type=pa.string())
        elif kind == "strand":
            cols[name] = pa.array(np.where(gi[lo:hi] % 2 == 0, "+", "-").tolist(), type=pa.string())
        elif kind == "impact":
            cols[name] = pa.array(np.where(coding, "MODERATE", "MODIFIER").tolist(), type=pa.string())
        elif kind == "small_int":
            cols[name] = pa.array(rng.integers(0, 5, n).astype(np.int32))
        elif kind == "af":
            x = (rng.random(n, dtype=np.float32) ** 6) * 0.5
            x[rng.random(n) < 0.55] = np.nan
            cols[name] = pa.array(x)
        elif kind == "patho":
            cols[name] = pa.array(patho)
        else:  # text metadata
            cols[name] = pa.array(np.array(["a", "b", "c", ""])[rng.integers(0, 4, n)].tolist(), type=pa.string())
    return pa.table(cols)
