# Inputs: an optional simulated cohort, then per-sample sequences (VCF / methylation paths).


rule simulate_cohort:
    output:
        samples=f"{OUT}/inputs/samples.tsv",
        fasta=f"{OUT}/inputs/genome.fa",
        regions=f"{OUT}/inputs/regions.bed",
        truth=f"{OUT}/inputs/truth.tsv",
        data=f"{OUT}/inputs/cohort.vcf.gz" if KIND == "vcf" else f"{OUT}/inputs/methylation_beta.tsv.gz",
    params:
        outdir=lambda wc, output: str(Path(output.samples).parent),
        s=config["simulate"],
        kind=KIND,
    log:
        f"{OUT}/logs/simulate_cohort.log",
    resources:
        mem_mb=res("light", "mem_mb"),
        runtime=res("light", "runtime"),
    conda:
        "../../variant_scoring/envs/biointerp.yaml"
    run:
        biointerp_job(
            "cohort simulate --kind {params.kind} --out {params.outdir} --cases {params.s[cases]} "
            "--controls {params.s[controls]} --regions {params.s[regions]} --causal {params.s[causal]} "
            "--confounded {params.s[confounded]} --preset {params.s[preset]} --seed {params.s[seed]}"
        )


rule cohort_sequences:
    input:
        unpack(lambda wc: {"samples": INP["samples"], "fasta": INP["fasta"], "regions": INP["regions"], **data_inputs()}),
    output:
        report=f"{OUT}/sequences/report.json",
        sequences=f"{OUT}/sequences/sequences.parquet",
    params:
        outdir=lambda wc, output: str(Path(output.report).parent),
        data=lambda wc, input: data_option(input),
        labels=label_args(),
        covariates=opt("--covariate", INP["covariates"]),
        seq=sequence_options(),
    log:
        f"{OUT}/logs/cohort_sequences.log",
    resources:
        mem_mb=res("light", "mem_mb"),
        runtime=res("light", "runtime"),
    conda:
        "../../variant_scoring/envs/biointerp.yaml"
    run:
        biointerp_job(
            "cohort sequences --samples {input.samples} --fasta {input.fasta} --regions {input.regions} "
            "{params.data} {params.labels} {params.covariates} {params.seq} --out {params.outdir}"
        )
