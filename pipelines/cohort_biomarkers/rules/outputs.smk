# Candidate biomarkers (ranking, regions, plots), the cross-validated probe, the report.


rule rank_candidates:
    input:
        f"{OUT}/features.h5ad",
    output:
        tsv=f"{OUT}/candidates/candidates.tsv",
        h5ad=f"{OUT}/candidates/candidates.h5ad",
        volcano=f"{OUT}/candidates/volcano.png",
    params:
        outdir=lambda wc, output: str(Path(output.tsv).parent),
        b=config["biomarkers"],
        adjust=opt("--adjust", config["biomarkers"]["adjust"]),
    log:
        f"{OUT}/logs/rank_candidates.log",
    resources:
        mem_mb=res("light", "mem_mb"),
        runtime=res("light", "runtime"),
    conda:
        "../../variant_scoring/envs/biointerp.yaml"
    run:
        biointerp_job(
            "cohort biomarkers --features {input} --test {params.b[test]} --top {params.b[top]} "
            "--min-per-group {params.b[min_per_group]} {params.adjust} --no-probe --out-dir {params.outdir}"
        )


rule cohort_probe:
    input:
        f"{OUT}/features.h5ad",
    output:
        probe=f"{OUT}/probe/probe.safetensors",
        metrics=f"{OUT}/probe/metrics.json",
        scores=f"{OUT}/probe/cv_scores.tsv",
    params:
        p=config["probe"],
        covariates=opt("--covariate", config["probe"]["covariates"]),
    log:
        f"{OUT}/logs/cohort_probe.log",
    threads: res("light", "threads")
    resources:
        mem_mb=res("light", "mem_mb"),
        runtime=res("light", "runtime"),
    conda:
        "../../variant_scoring/envs/biointerp.yaml"
    run:
        biointerp_job(
            "cohort probe --features {input} --folds {params.p[folds]} {params.covariates} "
            "--covariate-mode {params.p[covariate_mode]} --l2 {params.p[l2]} --n-perm {params.p[n_perm]} "
            "--n-boot {params.p[n_boot]} --seed {params.p[seed]} --out {output.probe} --metrics-out {output.metrics} "
            "--scores-out {output.scores}"
        )


rule cohort_report:
    input:
        features=f"{OUT}/features.h5ad",
        candidates=f"{OUT}/candidates/candidates.tsv",
        metrics=f"{OUT}/probe/metrics.json" if config["probe"]["enabled"] else [],
        sequences=f"{OUT}/sequences/report.json" if SEQUENCE_PATH else [],
    output:
        f"{OUT}/report.md",
    params:
        candidates=lambda wc, input: str(Path(input.candidates).parent),
        metrics=lambda wc, input: f"--probe-metrics {input.metrics}" if input.metrics else "",
        seqs=lambda wc, input: f"--sequences {Path(input.sequences).parent}" if input.sequences else "",
        top=config["biomarkers"]["top"],
    log:
        f"{OUT}/logs/cohort_report.log",
    resources:
        mem_mb=res("light", "mem_mb"),
        runtime=res("light", "runtime"),
    conda:
        "../../variant_scoring/envs/biointerp.yaml"
    run:
        biointerp_job(
            "cohort report --features {input.features} --candidates {params.candidates} {params.metrics} "
            "{params.seqs} --top {params.top} --out {output}"
        )
