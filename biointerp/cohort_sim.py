"""Simulated cohorts with planted truth on a :mod:`biointerp.synth` model-organism genome.

Two kinds, each written as the files the cohort commands read (reference FASTA, sample sheet,
regions, a truth table):

* :func:`simulate_vcf_cohort`: regions around gene promoters; a phased multi-sample VCF in which
  cases carry a planted allele in ``n_causal`` regions (a motif-breaking SNV or a motif deletion,
  probability ``p_case`` per case vs ``p_control`` per control), every sample carries common
  background alleles (same frequency in both groups, SNVs and small indels), and a confounder
  (``batch`` A/B, more cases in B) brings its own allele in ``n_confounded`` other regions.
* :func:`simulate_methylation_cohort`: :func:`biointerp.synth.make_methylation_cohort` (cases gain
  methylation at ``n_dmr`` CpG islands) plus the same ``batch`` confounder raising methylation at
  ``n_confounded`` other islands; regions = the islands.

The truth table marks each region ``causal`` / ``confounded`` / ``unlinked``; ``batch`` is a sheet
column, so probes and rankings can regress it out.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from biointerp.synth import PRESETS, SynthConfig, generate_genome, make_methylation_cohort, write_genome


def _genome(preset: str, seed: int, out: Path):
    g = generate_genome(SynthConfig(**PRESETS[preset], seed=seed))
    paths = write_genome(g, out)
    return g, paths["fasta"]


def _labels_and_batch(rng, n_cases: int, n_controls: int, p_batch_case: float, p_batch_control: float):
    samples = [f"S{i + 1:04d}" for i in range(n_cases + n_controls)]
    y = np.array([1] * n_cases + [0] * n_controls)
    perm = rng.permutation(len(y))
    y = y[perm]
    batch = np.where(rng.random(len(y)) < np.where(y == 1, p_batch_case, p_batch_control), "B", "A")
    age = np.round(rng.normal(60, 8, len(y)), 1)
    sheet = pd.DataFrame({"sample": samples, "condition": np.where(y == 1, "case", "control"), "batch": batch,
                          "age": age})
    return sheet, y, batch


def simulate_vcf_cohort(out_dir: str | Path, n_cases: int = 30, n_controls: int = 30, n_regions: int = 12,
                        region_len: int = 600, n_causal: int = 2, n_confounded: int = 2, p_case: float = 0.8,
                        p_control: float = 0.05, n_background: int = 4, p_batch_case: float = 0.75,
                        p_batch_control: float = 0.25, unphased_frac: float = 0.0, preset: str = "demo",
                        genome_seed: int = 0, seed: int = 0) -> dict[str, Path]:
    """Write ``genome.fa``, ``cohort.vcf.gz`` (+ ``.tbi``), ``samples.tsv``, ``regions.bed``, ``truth.tsv``.

    ``preset="demo", genome_seed=0`` is the genome the bundled demo model was trained on.
    ``unphased_frac``: fraction of samples written with unphased genotypes (``0/1``).
    Returns the paths (keys ``fasta, vcf, samples, regions, truth``).
    """
    import pysam

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    g, fasta = _genome(preset, genome_seed, out)
    rng = np.random.default_rng(seed)
    el = g.elements
    prom = el[el["type"] == "promoter"]
    if len(prom) < n_regions:
        raise ValueError(f"the {preset} genome has {len(prom)} promoters; ask for at most that many regions")
    pick = prom.iloc[np.sort(rng.choice(len(prom), size=n_regions, replace=False))]
    regions, truth = [], []
    roles = ["causal"] * n_causal + ["confounded"] * n_confounded + ["unlinked"] * (n_regions - n_causal - n_confounded)
    roles = list(rng.permutation(roles))
    sheet, y, batch = _labels_and_batch(rng, n_cases, n_controls, p_batch_case, p_batch_control)
    n = len(y)
    variants = []  # (chrom, pos, ref, alt, gt[n, 2])
    for k, (r, role) in enumerate(zip(pick.itertuples(index=False), roles)):
        seq = g.contigs[r.chrom]
        mid = (int(r.start) + int(r.end)) // 2
        start = max(1, min(mid - region_len // 2, len(seq) - region_len))
        end = start + region_len - 1
        name = f"R{k + 1:02d}_{r.parent or r.id}"
        regions.append((r.chrom, start - 1, end, name))
        used: list[int] = []

        def free(p: int, span: int = 12) -> bool:
            return start + 2 <= p <= end - 12 and all(abs(p - q) > span for q in used)

        planted = None
        if role in ("causal", "confounded"):
            motifs = el[(el["chrom"] == r.chrom) & el["type"].isin(["TATA_box", "TF_binding_site"])
                        & (el["start"] > start + 2) & (el["end"] < end - 12)]
            if len(motifs):
                m = motifs.iloc[int(rng.integers(len(motifs)))]
                p = int(m.start) + 1
            else:
                p = int(rng.integers(start + 20, end - 20))
            ref = seq[p - 1]
            if role == "causal" and k % 2 == 1 and p > start + 2:  # a motif deletion (VCF-anchored)
                ref_al = seq[p - 2:p + 3]
                variants.append((r.chrom, p - 1, ref_al, ref_al[0], None, role))
            else:
                alt = "ACGT"[("ACGT".index(ref) + 1 + int(rng.integers(3))) % 4]
                variants.append((r.chrom, p, ref, alt, None, role))
            used.append(p)
            carrier_p = np.where(y == 1, p_case, p_control) if role == "causal" else \
                np.where(batch == "B", p_case, p_control)
            carrier = rng.random(n) < carrier_p
            gt = np.zeros((n, 2), dtype=int)
            gt[carrier, rng.integers(0, 2, n)[carrier]] = 1
            variants[-1] = variants[-1][:4] + (gt, role)
            planted = variants[-1]
        for _ in range(n_background):
            for _try in range(50):
                p = int(rng.integers(start + 2, end - 12))
                if free(p):
                    break
            used.append(p)
            ref = seq[p - 1]
            if rng.random() < 0.25:  # small deletion
                ref, alt = seq[p - 1:p + 2], seq[p - 1]
            else:
                alt = "ACGT"[("ACGT".index(ref) + 1 + int(rng.integers(3))) % 4]
            f = rng.uniform(0.05, 0.5)
            gt = (rng.random((n, 2)) < f).astype(int)
            variants.append((r.chrom, p, ref, alt, gt, "background"))
        truth.append({"region": name, "chrom": r.chrom, "start": start, "end": end, "role": role,
                      "planted": f"{planted[0]}:{planted[1]}:{planted[2]}:{planted[3]}" if planted else ""})
    order = {c: i for i, c in enumerate(g.contigs)}
    variants.sort(key=lambda v: (order[v[0]], v[1]))
    unphased = rng.random(n) < unphased_frac
    vcf = out / "cohort.vcf"
    with open(vcf, "w") as fh:
        fh.write("##fileformat=VCFv4.2\n##source=biointerp.cohort_sim\n")
        for c, s in g.contigs.items():
            fh.write(f"##contig=<ID={c},length={len(s)}>\n")
        fh.write('##INFO=<ID=ROLE,Number=1,Type=String,Description="planted role: causal, confounded, background">\n')
        fh.write('##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n')
        fh.write("#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t" + "\t".join(sheet["sample"]) + "\n")
        for chrom, pos, ref, alt, gt, role in variants:
            calls = [f"{a}{'/' if u else '|'}{b}" for (a, b), u in zip(gt, unphased)]
            fh.write(f"{chrom}\t{pos}\t.\t{ref}\t{alt}\t.\tPASS\tROLE={role}\tGT\t" + "\t".join(calls) + "\n")
    gz = out / "cohort.vcf.gz"
    pysam.tabix_compress(str(vcf), str(gz), force=True)
    pysam.tabix_index(str(gz), preset="vcf", force=True)
    vcf.unlink()
    paths = {"fasta": fasta, "vcf": gz, "samples": out / "samples.tsv", "regions": out / "regions.bed",
             "truth": out / "truth.tsv"}
    sheet.to_csv(paths["samples"], sep="\t", index=False)
    pd.DataFrame(regions).to_csv(paths["regions"], sep="\t", header=False, index=False)
    pd.DataFrame(truth).to_csv(paths["truth"], sep="\t", index=False)
    return paths


def simulate_methylation_cohort(out_dir: str | Path, n_cases: int = 30, n_controls: int = 30, n_regions: int = 12,
                                n_dmr: int = 3, n_confounded: int = 2, effect: float = 0.35,
                                missing_rate: float = 0.05, p_batch_case: float = 0.75, p_batch_control: float = 0.25,
                                max_len: int = 800, preset: str = "demo", genome_seed: int = 0,
                                seed: int = 0) -> dict[str, Path]:
    """Write ``genome.fa``, ``methylation_beta.tsv.gz`` (``chrom:pos`` rows x samples), ``samples.tsv``,
    ``regions.bed`` (CpG islands, at most ``max_len`` bp each) and ``truth.tsv``."""
    import gzip

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    g, fasta = _genome(preset, genome_seed, out)
    rng = np.random.default_rng(seed)
    n_cpg_total = sum(s.count("CG") for s in g.contigs.values())
    beta, s0, cpgs = make_methylation_cohort(g.contigs, g.elements, n_cases=n_cases, n_controls=n_controls,
                                             n_cpgs=n_cpg_total, n_dmr_islands=n_dmr, effect=effect,
                                             missing_rate=0.0, seed=seed)
    sheet, y, batch = _labels_and_batch(rng, n_cases, n_controls, p_batch_case, p_batch_control)
    # make_methylation_cohort orders cases first: give its columns our (shuffled) sample ids by label
    case_cols = [c for c, cond in zip(s0["sample"], s0["condition"]) if cond == "case"]
    ctrl_cols = [c for c, cond in zip(s0["sample"], s0["condition"]) if cond == "control"]
    ren = dict(zip(case_cols, sheet["sample"][y == 1])) | dict(zip(ctrl_cols, sheet["sample"][y == 0]))
    beta = beta.rename(columns=ren)[list(sheet["sample"])]
    isl = g.elements[g.elements["type"] == "CpG_island"].reset_index(drop=True)
    cp = cpgs.set_index("cpg")
    dmr_pos = cp[cp["dmr"]]
    isl["dmr"] = [bool(((dmr_pos["chrom"] == r.chrom) & dmr_pos["pos"].between(r.start, r.end)).any())
                  for r in isl.itertuples()]
    others = isl[~isl["dmr"]]
    n_null = n_regions - int(isl["dmr"].sum()) - n_confounded
    pick_o = others.iloc[np.sort(rng.choice(len(others), size=n_confounded + max(n_null, 0), replace=False))]
    conf_ids = set(pick_o.index[rng.permutation(len(pick_o))[:n_confounded]])
    chosen = pd.concat([isl[isl["dmr"]], pick_o]).sort_index()
    regions, truth = [], []
    parts = pd.Series(beta.index.astype(str)).str.rpartition(":")
    chrom_of, pos_of = parts[0].to_numpy(), parts[2].astype(int).to_numpy()
    vals = beta.to_numpy().copy()
    for k, (i, r) in enumerate(chosen.iterrows()):
        s, e = int(r.start), min(int(r.end), int(r.start) + max_len - 1)
        role = "causal" if r["dmr"] else ("confounded" if i in conf_ids else "unlinked")
        name = f"I{k + 1:02d}_{r['chrom']}_{s}"
        regions.append((r["chrom"], s - 1, e, name))
        truth.append({"region": name, "chrom": r["chrom"], "start": s, "end": e, "role": role})
        if role == "confounded":
            rows = (chrom_of == r["chrom"]) & (pos_of >= s) & (pos_of <= e)
            vals[np.ix_(rows, batch == "B")] = np.clip(vals[np.ix_(rows, batch == "B")] + effect, 0, 1)
    if missing_rate > 0:
        vals[rng.random(vals.shape) < missing_rate] = np.nan
    beta = pd.DataFrame(np.round(vals, 4), index=beta.index, columns=beta.columns)
    paths = {"fasta": fasta, "beta": out / "methylation_beta.tsv.gz", "samples": out / "samples.tsv",
             "regions": out / "regions.bed", "truth": out / "truth.tsv"}
    with gzip.GzipFile(paths["beta"], "wb", mtime=0) as fh:
        fh.write(beta.to_csv(sep="\t").encode())
    sheet.to_csv(paths["samples"], sep="\t", index=False)
    pd.DataFrame(regions).to_csv(paths["regions"], sep="\t", header=False, index=False)
    pd.DataFrame(truth).to_csv(paths["truth"], sep="\t", index=False)
    return paths


def planted_precision(adata, truth: pd.DataFrame, k: int | None = None) -> dict:
    """Precision at k of the planted (``causal``) regions among the top-k candidate regions.

    ``adata`` must be ranked (:func:`biointerp.cohort.rank_features`); ``k`` defaults to the
    number of causal regions. Also returns where the confounded regions landed.
    """
    from biointerp.cohort import region_candidates

    reg = region_candidates(adata)
    causal = set(truth.loc[truth["role"] == "causal", "region"])
    conf = set(truth.loc[truth["role"] == "confounded", "region"])
    k = k or len(causal)
    top = list(reg.index[:k])
    return {"k": k, "precision_at_k": len(set(top) & causal) / k, "top_regions": top,
            "causal_ranks": sorted(int(reg.loc[r, "region_rank"]) for r in causal if r in reg.index),
            "confounded_ranks": sorted(int(reg.loc[r, "region_rank"]) for r in conf if r in reg.index),
            "n_regions": int(len(reg))}


def evaluate_planted(adata, truth: pd.DataFrame, covariates: tuple[str, ...] = ("batch",), folds: int = 5,
                     n_perm: int = 20, seed: int = 0) -> dict:
    """Planted-truth acceptance on a samples x features table: precision at k and CV AUROC, raw and with
    the covariates regressed out, each against a label-permutation control (``n_perm`` shuffles of the
    labels through the same ranking and the same CV)."""
    from biointerp.cohort import rank_features
    from biointerp.cohort_probe import adjust_covariates, cv_probe

    out: dict = {}
    rng = np.random.default_rng(seed)
    for name, table in (("raw", adata), ("adjusted", adjust_covariates(adata, list(covariates)))):
        ranked = rank_features(table.copy())
        res = {"precision": planted_precision(ranked, truth)}
        cv = cv_probe(table.copy(), k=folds, n_perm=n_perm, n_boot=500, seed=seed)["metrics"]
        res["cv"] = {k: cv[k] for k in ("auroc", "auroc_ci", "perm_p", "perm_auroc_mean", "perm_auroc_95",
                                        "n_samples", "n_features")}
        perm_prec = []
        for _ in range(n_perm):
            t = table.copy()
            lab = t.obs["label"].to_numpy().copy()
            ok = np.isfinite(lab)
            lab[ok] = rng.permutation(lab[ok])
            t.obs["label"] = lab
            perm_prec.append(planted_precision(rank_features(t), truth)["precision_at_k"])
        res["permutation_control"] = {"precision_at_k_mean": float(np.mean(perm_prec)) if perm_prec else None,
                                      "n_perm": n_perm,
                                      "expected_by_chance": res["precision"]["k"] / res["precision"]["n_regions"]}
        out[name] = res
    out["covariates"] = list(covariates)
    return out


def demo_cohort(out_dir: str | Path, model=None, n_per_group: int = 16, n_regions: int = 4,
                region_len: int = 300, seed: int = 0) -> dict:
    """The `biointerp demo` cohort step (seconds): a small planted VCF cohort -> haplotypes -> demo-model
    embeddings -> candidate regions (batch regressed out) and a 4-fold CV probe. Returns a summary."""
    from biointerp.cohort import rank_features
    from biointerp.cohort_embed import sample_features
    from biointerp.cohort_probe import adjust_covariates, cv_probe
    from biointerp.cohort_seq import read_regions, read_sample_sheet, vcf_sequences

    if model is None:
        from biointerp.models import load_model

        model = load_model("demo")
    out = Path(out_dir)
    p = simulate_vcf_cohort(out / "inputs", n_per_group, n_per_group, n_regions=n_regions, region_len=region_len,
                            n_causal=1, n_confounded=1, p_case=0.9, preset="tiny", genome_seed=7, seed=seed)
    ss = vcf_sequences(p["vcf"], p["fasta"], read_regions(p["regions"]), read_sample_sheet(p["samples"],
                                                                                         covariates=["batch"]))
    ss.save(out / "sequences")
    layer = f"blocks.{len([n for n in model.layer_names if n.count('.') == 1 and n.startswith('blocks.')]) // 2}"
    a = sample_features(model, ss, [layer])
    a.write_h5ad(out / "features.h5ad")
    truth = pd.read_csv(p["truth"], sep="\t")
    prec = planted_precision(rank_features(adjust_covariates(a, ["batch"])), truth)
    cv = cv_probe(a, k=4, covariates=["batch"], covariate_mode="regress", n_perm=0, n_boot=200, seed=seed)["metrics"]
    e = a.uns["biointerp"]["embedding"]
    return {"samples": int(a.n_obs), "regions": n_regions, "layer": layer, "sequences": e["sequences"],
            "model_passes": e["forward_sequences"], "precision": prec, "cv_auroc": cv["auroc"],
            "cv_auroc_ci": cv["auroc_ci"], "out": str(out)}
