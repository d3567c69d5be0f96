"""Cohort input -> per-sample sequences: sample sheets, regions, VCF haplotypes, methylation encodings.

A *sequence set* is what every later cohort step reads (plain tables, one folder):

``samples.tsv``       the sample sheet with ``label`` (1/0/NaN), ``status`` and ``status_detail``
``regions.tsv``       ``region, chrom, start, end`` (1-based inclusive)
``sequences.parquet`` one row per (sample, region, encoding, track): ``seq_id`` + counts
``unique.parquet``    ``seq_id, seq`` once per distinct sequence (a reference-identical region is
                      one row however many samples share it)
``records.parquet``   per-sample status of every VCF record / methylation call that was not a plain
                      no-op (applied, applied_unphased, overlap, ref_mismatch, ...)
``report.json``       counts of everything above (``counts``) and the settings used

VCF path (:func:`vcf_sequences`): each sample gets two haplotype sequences (tracks ``hap1``,
``hap2``) per region: the reference with the sample's alleles spliced in (SNVs, MNVs and
VCF-anchored indels). Phased genotypes (``0|1``) place each allele on its own haplotype.
**Unphased heterozygous genotypes** (``0/1``) follow ``unphased``: ``"consensus"`` (default) puts
the non-reference allele on *both* sequences (an alt-carrier consensus: the sample is read as a
carrier; status ``applied_unphased``, counted) and ``"error"`` stops with the record named.
Unphased homozygous genotypes (``1/1``) need no phase and are plain ``applied``.
Records that cannot be applied keep a status per sample: ``overlap`` (overlaps an allele already
applied to that haplotype), ``ref_mismatch``, ``symbolic_allele`` (``<DEL>``, ``*``),
``crosses_region`` (extends past the region), ``missing_genotype`` (``./.``: that haplotype stays
reference), ``filtered`` (FILTER not PASS, with ``pass_only``).

Methylation path (:func:`methylation_sequences`): per-CpG beta values (a CpG x sample matrix with
coordinates, or per-sample bedMethyl files) are thresholded (``beta >= threshold`` = methylated)
at the reference CpGs of each region and written in two encodings: ``extended`` (methylated CpG
C -> ``M``, the extended alphabet of methylation-aware models) and ``bisulfite`` (every
unmethylated C read as ``T``: unmethylated CpG Cs and, unless ``bisulfite_cpg_only``, every
non-CpG C; methylated CpG Cs stay ``C``), which any DNA model reads. CpGs without a call
are imputed with the cohort mean beta at that CpG (``missing="mean"``, counted as ``n_imputed``)
or left as the reference ``C`` (``missing="reference"``); calls at positions that are not a
reference CpG are counted (``not_cpg``) and not applied.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from biointerp.cohort import CohortError, _label_values, _read_table
from biointerp.tables import provenance

RECORD_STATUS = ("applied", "applied_unphased", "overlap", "ref_mismatch", "symbolic_allele", "crosses_region",
                 "missing_genotype", "filtered")


def seq_id(seq: str) -> str:
    """Content id of a sequence (identical sequences share it)."""
    return hashlib.sha1(seq.encode()).hexdigest()[:20]


# ----------------------------------------------------------------------------------------- sample sheet
def read_sample_sheet(path: str | Path, label_column: str = "condition", case: str | Sequence[str] | None = None,
                      control: str | Sequence[str] | None = None, sample_column: str | None = None,
                      covariates: Sequence[str] = (), path_columns: Sequence[str] = ()) -> pd.DataFrame:
    """Read a sample sheet (TSV/CSV: sample id, label column, covariates, per-sample data paths).

    Returns a DataFrame indexed by ``sample`` with the sheet's columns plus ``label`` (1/0/NaN),
    ``status`` (``ok``, ``no_label``, ``missing_covariate``, ``missing_file``) and
    ``status_detail``. Paths in ``path_columns`` are resolved relative to the sheet's folder.
    ``uns``-style facts go to ``df.attrs`` (``case``, ``control``, ``label_column``, ``covariates``).

    Raises :class:`CohortError` for a missing column, duplicated sample ids, or labels that give
    no cases or no controls (a single-class cohort).
    """
    path = Path(path)
    if isinstance(case, str):
        case = [case]
    if isinstance(control, str):
        control = [control]
    head = _read_table(path, "sample sheet", nrows=0)
    cols = list(head.columns)
    sid = sample_column or ("sample" if "sample" in cols else cols[0])
    for what, c in [("sample", sid), ("label", label_column)] + [("covariate", c) for c in covariates] + \
            [("path", c) for c in path_columns]:
        if c not in cols:
            raise CohortError(f"{what} column {c!r} not in {path}; columns are {cols}")
    sheet = _read_table(path, "sample sheet", dtype={sid: str})
    sheet[sid] = sheet[sid].astype(str).str.strip()
    dup = sheet[sid][sheet[sid].duplicated()].unique()
    if len(dup):
        raise CohortError(f"{len(dup)} duplicated sample ids in {path} (e.g. {list(dup[:3])}); make them unique")
    y, cases, controls = _label_values(sheet[label_column], case, control, label_column)
    sheet = sheet.set_index(sid)
    sheet.index.name = "sample"
    sheet["label"] = y
    status = np.full(len(sheet), "ok", dtype=object)
    detail = np.full(len(sheet), "", dtype=object)
    for i in np.flatnonzero(~np.isfinite(y)):
        v = sheet[label_column].iloc[i]
        status[i] = "no_label"
        detail[i] = f"{label_column} missing" if pd.isna(v) else f"{label_column}={v!r} is neither case nor control"
    for c in covariates:
        for i in np.flatnonzero(sheet[c].isna().to_numpy()):
            if status[i] == "ok":
                status[i], detail[i] = "missing_covariate", f"covariate {c} missing"
    for c in path_columns:
        resolved = []
        for i, p in enumerate(sheet[c].astype("string")):
            if pd.isna(p) or not str(p).strip():
                resolved.append("")
                if status[i] == "ok":
                    status[i], detail[i] = "missing_file", f"no {c} path"
                continue
            q = Path(str(p).strip())
            q = q if q.is_absolute() else path.parent / q
            resolved.append(str(q))
            if not q.exists() and status[i] == "ok":
                status[i], detail[i] = "missing_file", f"{c} file {q} not found"
        sheet[c] = resolved
    sheet["status"] = status
    sheet["status_detail"] = detail
    sheet.attrs.update(label_column=label_column, case=list(cases), control=list(controls),
                       covariates=list(covariates), sheet=str(path))
    ok = sheet["status"] == "ok"
    if not ((sheet["label"][ok] == 1).any() and (sheet["label"][ok] == 0).any()):
        raise CohortError(f"{path}: after exclusions ({sheet['status'].value_counts().to_dict()}) no usable cases "
                          "or no usable controls remain")
    return sheet


def _check_both_classes(samples: pd.DataFrame, step: str) -> None:
    """Raise when the usable samples (status ``ok``) hold no case or no control: a single-class cohort."""
    ok = samples["status"].astype(str) == "ok"
    lab = samples["label"].to_numpy(dtype=float)
    n_case, n_ctrl = int((ok & (lab == 1)).sum()), int((ok & (lab == 0)).sum())
    if n_case == 0 or n_ctrl == 0:
        raise CohortError(f"after {step}: {n_case} usable cases and {n_ctrl} usable controls "
                          f"(sample status {samples['status'].astype(str).value_counts().to_dict()}); a cohort needs "
                          "both classes: check the sample ids of the sheet and the data")


# ----------------------------------------------------------------------------------------- regions
def read_regions(spec: str | Path | Sequence[str]) -> pd.DataFrame:
    """Regions of interest -> DataFrame ``region, chrom, start, end`` (1-based inclusive).

    ``spec``: a BED file (0-based half-open; 4th column = name), a TSV with ``chrom, start, end``
    (1-based, optional ``region``), or ``chrom:start-end`` strings. Duplicate names are an error;
    overlapping regions are allowed (each is embedded on its own).
    """
    rows = []
    if isinstance(spec, (str, Path)) and Path(spec).exists():
        p = Path(spec)
        if p.suffix in (".bed", ".gz") and not p.name.endswith((".tsv.gz", ".csv.gz")):
            bed = pd.read_csv(p, sep="\t", header=None, comment="#")
            if bed.shape[1] < 3:
                raise CohortError(f"{p}: a BED file needs chrom, start, end columns")
            for r in bed.itertuples(index=False):
                name = str(r[3]) if bed.shape[1] > 3 else f"{r[0]}:{int(r[1]) + 1}-{int(r[2])}"
                rows.append((name, str(r[0]), int(r[1]) + 1, int(r[2])))
        else:
            t = _read_table(p, "regions table")
            if not {"chrom", "start", "end"} <= set(t.columns):
                raise CohortError(f"{p}: needs columns chrom, start, end (1-based inclusive); has {list(t.columns)}")
            for r in t.itertuples(index=False):
                name = getattr(r, "region", None) or f"{r.chrom}:{int(r.start)}-{int(r.end)}"
                rows.append((str(name), str(r.chrom), int(r.start), int(r.end)))
    else:
        items = [spec] if isinstance(spec, str) else list(spec)
        for s in items:
            chrom, _, rng = str(s).rpartition(":")
            a, _, b = rng.replace(",", "").partition("-")
            if not chrom or not a.isdigit() or not b.isdigit():
                raise CohortError(f"region {s!r}: expected chrom:start-end (1-based) or a BED file")
            rows.append((str(s), chrom, int(a), int(b)))
    df = pd.DataFrame(rows, columns=["region", "chrom", "start", "end"])
    if df.empty:
        raise CohortError("no regions given")
    bad = df[df["end"] < df["start"]]
    if len(bad):
        raise CohortError(f"{len(bad)} regions end before they start (e.g. {bad['region'].iloc[0]})")
    dup = df["region"][df["region"].duplicated()].unique()
    if len(dup):
        raise CohortError(f"duplicate region names {list(dup[:3])}")
    return df.reset_index(drop=True)


# ----------------------------------------------------------------------------------------- sequence set
@dataclass
class SequenceSet:
    """Per-sample sequences (see the module doc for the table layouts)."""

    samples: pd.DataFrame
    regions: pd.DataFrame
    sequences: pd.DataFrame
    unique: dict[str, str]
    records: pd.DataFrame
    report: dict = field(default_factory=dict)

    def save(self, out_dir: str | Path) -> Path:
        """Write the folder layout of the module doc."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.samples.to_csv(out / "samples.tsv", sep="\t")
        self.regions.to_csv(out / "regions.tsv", sep="\t", index=False)
        self.sequences.to_parquet(out / "sequences.parquet", index=False)
        pd.DataFrame({"seq_id": list(self.unique), "seq": list(self.unique.values())}).to_parquet(
            out / "unique.parquet", index=False)
        self.records.to_parquet(out / "records.parquet", index=False)
        (out / "report.json").write_text(json.dumps(self.report, indent=2, default=str) + "\n")
        return out

    @classmethod
    def load(cls, folder: str | Path) -> "SequenceSet":
        d = Path(folder)
        for name in ("samples.tsv", "regions.tsv", "sequences.parquet", "unique.parquet", "report.json"):
            if not (d / name).exists():
                raise CohortError(f"{d} is not a sequence set ({name} missing); make one with "
                                  "`biointerp cohort sequences`")
        samples = pd.read_csv(d / "samples.tsv", sep="\t", index_col=0, dtype={0: str})
        samples.index = samples.index.astype(str)
        u = pd.read_parquet(d / "unique.parquet")
        rec = pd.read_parquet(d / "records.parquet") if (d / "records.parquet").exists() else pd.DataFrame()
        return cls(samples, pd.read_csv(d / "regions.tsv", sep="\t"), pd.read_parquet(d / "sequences.parquet"),
                   dict(zip(u["seq_id"], u["seq"])), rec, json.loads((d / "report.json").read_text()))

    def summary(self) -> str:
        """One line accounting for samples, sequences and records."""
        c = self.report.get("counts", {})
        st = c.get("sample_status", {})
        parts = [f"{c.get('samples_ok', 0)} of {c.get('samples', 0)} samples usable"
                 + (" (" + ", ".join(f"{n} {k}" for k, n in st.items() if k != "ok") + ")" if len(st) > 1 else ""),
                 f"{c.get('regions', 0)} regions", f"{c.get('sequences', 0)} sequences, "
                 f"{c.get('unique_sequences', 0)} distinct"]
        rs = c.get("record_status", {})
        if rs:
            parts.append("records per sample: " + ", ".join(f"{n} {k}" for k, n in rs.items()))
        for k in ("calls_imputed", "calls_not_cpg", "calls_low_coverage"):
            if c.get(k):
                parts.append(f"{c[k]} {k.replace('_', ' ')}")
        return "; ".join(parts)


def _finish(samples, regions, rows, unique, records, settings, extra_counts) -> SequenceSet:
    seqs = pd.DataFrame(rows)
    rec = pd.DataFrame(records, columns=["sample", "region", "record", "track", "status", "detail"])
    st = samples["status"].value_counts()
    counts = {"samples": int(len(samples)), "samples_ok": int((samples["status"] == "ok").sum()),
              "sample_status": {k: int(v) for k, v in st.items()},
              "cases": int(((samples["status"] == "ok") & (samples["label"] == 1)).sum()),
              "controls": int(((samples["status"] == "ok") & (samples["label"] == 0)).sum()),
              "regions": int(len(regions)), "sequences": int(len(seqs)), "unique_sequences": int(len(unique)),
              "record_status": {k: int(v) for k, v in rec["status"].value_counts().items()}}
    counts.update(extra_counts)
    report = provenance(kind="cohort_sequences", **settings)
    report["counts"] = counts
    report["case"], report["control"] = samples.attrs.get("case", []), samples.attrs.get("control", [])
    report["label_column"] = samples.attrs.get("label_column")
    report["covariates"] = samples.attrs.get("covariates", [])
    return SequenceSet(samples, regions, seqs, unique, rec, report)


# ----------------------------------------------------------------------------------------- VCF
@dataclass
class _Rec:
    pos0: int  # 0-based offset of REF in the region sequence
    ref: str
    alts: tuple
    vid: str
    problem: str  # "" = applicable
    detail: str


def _region_records(vf, chrom_vcf: str, reg, ref_seq: str, pass_only: bool) -> tuple[list, list]:
    out, recs = [], []
    for rec in vf.fetch(chrom_vcf, reg.start - 1, reg.end):
        ref = (rec.ref or "").upper()
        alts = tuple((a or "").upper() for a in (rec.alts or ()))
        vid = f"{reg.chrom}:{rec.pos}:{rec.ref}:{','.join(rec.alts or ())}"
        off = rec.pos - reg.start
        problem, detail = "", ""
        if pass_only and rec.filter.keys() and list(rec.filter.keys()) != ["PASS"]:
            problem, detail = "filtered", f"FILTER {','.join(rec.filter.keys())}"
        elif off < 0 or rec.pos + len(ref) - 1 > reg.end:
            problem, detail = "crosses_region", f"{rec.pos}-{rec.pos + len(ref) - 1} extends past {reg.region}"
        elif ref_seq[off:off + len(ref)] != ref:
            problem, detail = "ref_mismatch", f"REF {ref} but the reference has {ref_seq[off:off + len(ref)]}"
        out.append((_Rec(off, ref, alts, vid, problem, detail), rec))
        recs.append(rec)
    return out, recs


def vcf_sequences(vcf: str | Path, fasta: str | Path, regions: pd.DataFrame, samples: pd.DataFrame,
                  unphased: str = "consensus", pass_only: bool = False, progress: bool = False) -> SequenceSet:
    """Per-sample haplotype sequences over ``regions`` from a bgzipped, indexed multi-sample VCF.

    Parameters
    ----------
    vcf
        ``.vcf.gz`` with a ``.tbi``/``.csi`` index (``bcftools index -t`` / ``tabix -p vcf``).
    fasta
        The reference the VCF was called against (plain or bgzip FASTA).
    regions
        From :func:`read_regions`.
    samples
        From :func:`read_sample_sheet`; samples missing from the VCF get status ``not_in_vcf``.
    unphased
        ``"consensus"`` or ``"error"`` (module doc).
    pass_only
        Records whose FILTER is not PASS are not applied (status ``filtered``).

    Returns
    -------
    :class:`SequenceSet` with tracks ``hap1``/``hap2`` (encoding ``dna``) for every usable sample.
    """
    import pysam
    from tqdm.auto import tqdm

    from biointerp.genome import Genome

    if unphased not in ("consensus", "error"):
        raise CohortError(f"unphased must be consensus or error, not {unphased!r}")
    vcf = Path(vcf)
    if not vcf.exists():
        raise CohortError(f"VCF {vcf} not found")
    try:
        vf = pysam.VariantFile(str(vcf))
    except (OSError, ValueError) as err:
        raise CohortError(f"cannot read VCF {vcf}: {err}") from err
    if vf.index is None:
        raise CohortError(f"{vcf} has no index; bgzip it and run `tabix -p vcf {vcf}` (or bcftools index -t)")
    genome = Genome(fasta)
    samples = samples.copy()
    in_vcf = set(vf.header.samples)
    for s in samples.index:
        if s not in in_vcf and samples.at[s, "status"] == "ok":
            samples.at[s, "status"] = "not_in_vcf"
            samples.at[s, "status_detail"] = f"no column in {vcf.name}"
    _check_both_classes(samples, f"matching the sheet against {vcf.name}")
    use = [s for s in samples.index if samples.at[s, "status"] == "ok"]
    vf.subset_samples(use)
    contigs = set(vf.header.contigs)
    unique: dict[str, str] = {}
    rows, records = [], []
    n_records = 0
    for reg in tqdm(list(regions.itertuples(index=False)), desc="haplotypes", unit="region", disable=not progress):
        ref_seq = genome.fetch(reg.chrom, reg.start, reg.end)
        chrom_vcf = next((c for c in _aliases(reg.chrom) if c in contigs), None)
        recs = []
        if chrom_vcf is not None:
            recs, _ = _region_records(vf, chrom_vcf, reg, ref_seq, pass_only)
        n_records += len(recs)
        # genotypes: per record, per sample -> (alleles, phased)
        for s in use:
            edits = {1: [], 2: []}
            for r, rec in recs:
                call = rec.samples[s]
                gt = call.get("GT")
                if gt is None or all(a is None for a in gt):
                    records.append((s, reg.region, r.vid, "both", "missing_genotype", "no genotype; reference kept"))
                    continue
                gt = tuple(gt) if len(gt) == 2 else (gt[0], gt[0])  # haploid calls: both sequences
                if all(a == 0 for a in gt if a is not None) and None not in gt:
                    continue  # homozygous reference: nothing to apply
                het = gt[0] != gt[1]
                status = "applied"
                if het and not call.phased:
                    if unphased == "error":
                        raise CohortError(f"sample {s}: unphased heterozygous genotype at {r.vid}; phase the VCF "
                                          "(e.g. with SHAPEIT/Beagle) or use --unphased consensus")
                    alt = max(a for a in gt if a is not None)
                    gt = (alt, alt)
                    status = "applied_unphased"
                for hap, a in zip((1, 2), gt):
                    if a is None:
                        records.append((s, reg.region, r.vid, f"hap{hap}", "missing_genotype",
                                        "allele missing; reference kept"))
                    elif a > 0:
                        edits[hap].append((r, a, status))
            for hap in (1, 2):
                seq, n_app, n_not = _apply(ref_seq, edits[hap], s, reg.region, hap, records)
                k = seq_id(seq)
                unique.setdefault(k, seq)
                rows.append({"sample": s, "region": reg.region, "encoding": "dna", "track": f"hap{hap}",
                             "seq_id": k, "length": len(seq), "n_applied": n_app, "n_not_applied": n_not,
                             "reference": seq == ref_seq})
        unique.setdefault(seq_id(ref_seq), ref_seq)
    vf.close()
    settings = dict(vcf=str(vcf), fasta=str(fasta), unphased=unphased, pass_only=pass_only, source="vcf")
    return _finish(samples, regions, rows, unique, records, settings, {"vcf_records_in_regions": n_records})


def _aliases(chrom: str) -> list[str]:
    from biointerp.variants import contig_aliases

    return [chrom] + [a for a in contig_aliases(chrom) if a != chrom]


def _apply(ref_seq: str, edits: list, sample: str, region: str, hap: int, records: list) -> tuple[str, int, int]:
    """Splice the alleles of one haplotype into the region sequence; statuses go to ``records``."""
    parts, last, n_app, n_not = [], 0, 0, 0
    for r, a, status in sorted(edits, key=lambda e: (e[0].pos0, -len(e[0].ref))):
        alt = r.alts[a - 1] if a - 1 < len(r.alts) else ""
        track = f"hap{hap}"
        if r.problem:
            records.append((sample, region, r.vid, track, r.problem, r.detail))
            n_not += 1
        elif not alt or alt.startswith("<") or alt == "*" or not set(alt) <= set("ACGTN"):
            records.append((sample, region, r.vid, track, "symbolic_allele", f"ALT {alt or '.'} not a sequence"))
            n_not += 1
        elif r.pos0 < last:
            records.append((sample, region, r.vid, track, "overlap",
                            f"overlaps an allele already applied to {track} (ends at offset {last})"))
            n_not += 1
        else:
            parts.append(ref_seq[last:r.pos0])
            parts.append(alt)
            last = r.pos0 + len(r.ref)
            records.append((sample, region, r.vid, track, status, f"ALT {alt}"))
            n_app += 1
    parts.append(ref_seq[last:])
    return "".join(parts), n_app, n_not


# ----------------------------------------------------------------------------------------- methylation
def read_beta_matrix(path: str | Path) -> pd.DataFrame:
    """CpG x sample beta matrix with coordinates -> DataFrame indexed by (chrom, pos), samples as columns.

    Coordinates: columns ``chrom`` and ``pos`` (1-based C of the CpG; or ``start`` 0-based with
    ``end``), or a first column of ``chrom:pos`` ids (the ``biointerp synth cohort`` layout). Values
    in [0, 1] (percentages in [0, 100] are divided by 100); empty cells are missing.
    """
    path = Path(path)
    t = _read_table(path, "beta matrix")
    cols = list(t.columns)
    if "chrom" in cols and ("pos" in cols or "start" in cols):
        pos = t["pos"].astype(int) if "pos" in cols else t["start"].astype(int) + 1
        chrom = t["chrom"].astype(str)
        t = t.drop(columns=[c for c in ("chrom", "pos", "start", "end", "cpg", "id") if c in cols])
    else:
        ids = t.iloc[:, 0].astype(str)
        sp = ids.str.rpartition(":")
        if not sp[2].str.isdigit().all():
            raise CohortError(f"{path}: rows need coordinates (columns chrom, pos or ids chrom:pos), e.g. "
                              f"{ids.iloc[0]!r} is not chrom:pos; use `cohort biomarkers` for a matrix without "
                              "coordinates (feature-matrix path)")
        chrom, pos = sp[0], sp[2].astype(int)
        t = t.iloc[:, 1:]
    t.columns = t.columns.astype(str).str.strip()
    try:
        vals = t.apply(pd.to_numeric, errors="raise").to_numpy(dtype=np.float64)
    except (ValueError, TypeError) as err:
        raise CohortError(f"{path}: non-numeric beta values ({err})") from err
    if np.nanmax(vals, initial=0) > 1.0:
        vals = vals / 100.0
    out = pd.DataFrame(vals, index=pd.MultiIndex.from_arrays([chrom.to_numpy(), pos.to_numpy()],
                                                             names=["chrom", "pos"]), columns=t.columns)
    if out.index.duplicated().any():
        raise CohortError(f"{path}: duplicated CpG coordinates (e.g. {out.index[out.index.duplicated()][0]})")
    return out


def read_bedmethyl(path: str | Path, min_coverage: int = 5, mod_code: str = "m") -> tuple[pd.Series, dict]:
    """One sample's bedMethyl (modkit pileup / ENCODE layout) -> beta per CpG ``(chrom, pos)``.

    Columns used: 1 chrom, 2 start (0-based), 4 name/mod code, 6 strand, 10 valid coverage,
    11 percent modified (whitespace- or tab-separated; extra columns ignored). With modkit's
    mod codes only ``mod_code`` rows are kept (``m`` = 5mC). A ``-`` strand call sits on the G
    of the CpG and is merged with the ``+`` C (coverage-weighted). Sites with coverage below
    ``min_coverage`` are dropped and counted. Returns ``(beta Series, counts)``.
    """
    path = Path(path)
    try:
        t = pd.read_csv(path, sep=r"\s+", header=None, comment="#", engine="python")
    except (OSError, ValueError, pd.errors.ParserError) as err:
        raise CohortError(f"cannot read bedMethyl {path}: {err}") from err
    if t.shape[1] < 11:
        raise CohortError(f"{path}: a bedMethyl file has at least 11 columns (coverage in 10, percent in 11); "
                          f"found {t.shape[1]}")
    codes = t[3].astype(str)
    n_rows = len(t)
    if codes.isin(["m", "h", "a", "c", "g", "21839", "17082", "17596", "19228"]).all():
        t = t[codes == mod_code]
    cov = t[9].astype(float)
    low = cov < min_coverage
    t = t[~low]
    pos = t[1].astype(int) + np.where(t[5].astype(str) == "-", 0, 1)  # 1-based C of the CpG on +
    df = pd.DataFrame({"chrom": t[0].astype(str).to_numpy(), "pos": pos.to_numpy(),
                       "n": t[9].astype(float).to_numpy(), "m": (t[10].astype(float) / 100 * t[9].astype(float)).to_numpy()})
    g = df.groupby(["chrom", "pos"], sort=True)[["n", "m"]].sum()
    beta = (g["m"] / g["n"]).rename(path.name)
    return beta, {"rows": int(n_rows), "low_coverage": int(low.sum()), "cpgs": int(len(beta))}


def methylation_sequences(fasta: str | Path, regions: pd.DataFrame, samples: pd.DataFrame,
                          beta: pd.DataFrame | None = None, bedmethyl_column: str | None = None,
                          threshold: float = 0.5, encodings: Sequence[str] = ("extended", "bisulfite"),
                          missing: str = "mean", bisulfite_cpg_only: bool = False, methyl_token: str = "M",
                          min_coverage: int = 5, progress: bool = False) -> SequenceSet:
    """Per-sample methylation-encoded sequences over ``regions`` (module doc).

    Give either ``beta`` (from :func:`read_beta_matrix`; samples missing from it get status
    ``not_in_matrix``) or ``bedmethyl_column`` (a sample-sheet column of bedMethyl paths).
    Returns a :class:`SequenceSet` with one track (``meth``) per encoding; ``sequences`` rows carry
    ``n_cpg``, ``n_called``, ``n_methylated``, ``n_imputed``.
    """
    from tqdm.auto import tqdm

    from biointerp.genome import Genome

    bad = set(encodings) - {"extended", "bisulfite"}
    if bad or not encodings:
        raise CohortError(f"unknown encodings {sorted(bad)}; use extended and/or bisulfite")
    if missing not in ("mean", "reference"):
        raise CohortError(f"missing must be mean or reference, not {missing!r}")
    samples = samples.copy()
    extra: dict = {"calls_low_coverage": 0}
    if beta is None:
        if bedmethyl_column is None:
            raise CohortError("give a beta matrix or a sample-sheet column of bedMethyl files")
        cols = {}
        for s in samples.index[samples["status"] == "ok"]:
            b, c = read_bedmethyl(samples.at[s, bedmethyl_column], min_coverage=min_coverage)
            cols[s] = b
            extra["calls_low_coverage"] += c["low_coverage"]
        beta = pd.DataFrame(cols)
    for s in samples.index:
        if s not in beta.columns and samples.at[s, "status"] == "ok":
            samples.at[s, "status"], samples.at[s, "status_detail"] = "not_in_matrix", "no methylation data"
    _check_both_classes(samples, "matching the sheet against the methylation data")
    use = [s for s in samples.index if samples.at[s, "status"] == "ok"]
    genome = Genome(fasta)
    unique: dict[str, str] = {}
    rows, records = [], []
    n_not_cpg = n_imputed_total = 0
    bchrom = beta.index.get_level_values(0).astype(str)
    bpos = beta.index.get_level_values(1).astype(int)
    for reg in tqdm(list(regions.itertuples(index=False)), desc="methylation", unit="region", disable=not progress):
        ref = genome.fetch(reg.chrom, reg.start, reg.end)
        arr = np.frombuffer(ref.encode(), dtype=np.uint8)
        cpg_off = np.flatnonzero((arr[:-1] == ord("C")) & (arr[1:] == ord("G")))
        names = {reg.chrom} | set(_aliases(reg.chrom))
        sel = np.isin(bchrom, list(names)) & (bpos >= reg.start) & (bpos <= reg.end)
        sub = beta[sel]
        offs = sub.index.get_level_values(1).astype(int).to_numpy() - reg.start
        is_cpg = np.isin(offs, cpg_off)
        n_not_cpg += int((~is_cpg).sum()) * len(use)
        for o in offs[~is_cpg]:
            records.append(("*", reg.region, f"{reg.chrom}:{o + reg.start}", "meth", "not_cpg",
                            "call at a position that is not a reference CpG; not applied"))
        sub = sub[is_cpg]
        b = np.full((len(cpg_off), len(use)), np.nan)
        row_of = {o: i for i, o in enumerate(cpg_off)}
        if len(sub):
            idx = [row_of[o] for o in offs[is_cpg]]
            b[idx] = sub.reindex(columns=use).to_numpy(dtype=np.float64)
        called = np.isfinite(b)
        if missing == "mean":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: never called in the cohort
                mu = np.nanmean(b, axis=1) if b.size else np.zeros(0)
            fill = np.where(np.isfinite(mu), mu, np.nan)
            b = np.where(called, b, fill[:, None])
        meth = b >= threshold  # NaN (never called anywhere / missing=reference) -> not methylated
        unmeth = b < threshold
        for j, s in enumerate(use):
            n_imp = int((~called[:, j] & np.isfinite(b[:, j])).sum())
            n_imputed_total += n_imp
            for enc in encodings:
                seq = _encode(ref, cpg_off, meth[:, j], unmeth[:, j], enc, bisulfite_cpg_only, methyl_token)
                k = seq_id(seq)
                unique.setdefault(k, seq)
                rows.append({"sample": s, "region": reg.region, "encoding": enc, "track": "meth", "seq_id": k,
                             "length": len(seq), "n_cpg": int(len(cpg_off)), "n_called": int(called[:, j].sum()),
                             "n_methylated": int(meth[:, j].sum()), "n_imputed": n_imp})
    extra.update(calls_not_cpg=n_not_cpg, calls_imputed=n_imputed_total)
    settings = dict(fasta=str(fasta), threshold=threshold, encodings=list(encodings), missing=missing,
                    bisulfite_cpg_only=bisulfite_cpg_only, methyl_token=methyl_token, source="methylation")
    return _finish(samples, regions, rows, unique, records, settings, extra)


def _encode(ref: str, cpg_off: np.ndarray, meth: np.ndarray, unmeth: np.ndarray, enc: str, cpg_only: bool,
            token: str) -> str:
    s = bytearray(ref.encode())
    if enc == "extended":
        for o in cpg_off[meth]:
            s[o] = ord(token)
        return s.decode()
    # bisulfite: unmethylated C -> T; methylated CpG C stays C; uncalled CpGs (no value anywhere) stay C
    if not cpg_only:
        keep = set(cpg_off.tolist())
        arr = np.frombuffer(bytes(s), dtype=np.uint8).copy()
        c = np.flatnonzero(arr == ord("C"))
        c = c[~np.isin(c, list(keep))] if keep else c
        arr[c] = ord("T")
        s = bytearray(arr.tobytes())
    for o in cpg_off[unmeth]:
        s[o] = ord("T")
    return s.decode()
