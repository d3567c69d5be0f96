# Inputs: optional synthetic genome + variants, then the checked variant table.


if config["synthetic"]["enabled"]:

    rule synth_inputs:
        output:
            fasta=config["fasta"],
            variants=config["variants"],
        params:
            outdir=lambda wc, output: str(Path(output.fasta).parent),
            preset=config["synthetic"]["preset"],
            seed=config["synthetic"]["seed"],
            extra=config["synthetic"]["extra"],
        log:
            f"{OUT}/logs/synth_inputs.log",
        conda:
            "../envs/biointerp.yaml"
        run:
            biointerp_job(
                "synth genome --out {params.outdir} --preset {params.preset} "
                "--seed {params.seed} {params.extra}"
            )


rule check_variants:
    input:
        fasta=config["fasta"],
        variants=config["variants"],
    output:
        f"{OUT}/variants/checked.parquet",
    params:
        info=info_args(),
        max_len=config["max_allele_len"],
    log:
        f"{OUT}/logs/check_variants.log",
    threads: 1
    resources:
        mem_mb=res("light", "mem_mb"),
        runtime=res("light", "runtime"),
    conda:
        "../envs/biointerp.yaml"
    run:
        biointerp_job(
            "variants check --fasta {input.fasta} --vcf {input.variants} "
            "{params.info} --max-allele-len {params.max_len} --out {output}"
        )


rule label_variants:
    input:
        f"{OUT}/variants/checked.parquet",
    output:
        f"{OUT}/variants/labelled.parquet",
    params:
        labels=json.dumps(config["labels"]),
        columns=json.dumps(config["columns"]),
    log:
        f"{OUT}/logs/label_variants.log",
    conda:
        "../envs/biointerp.yaml"
    run:
        biointerp_job(
            "pipeline labels {input} --out {output} --spec {params.labels:q} "
            "--columns {params.columns:q}"
        )
