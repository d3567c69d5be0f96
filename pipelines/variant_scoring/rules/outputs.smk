# Final scores table (AnnData + Parquet), annotated VCF and variant database.


rule finalize_scores:
    input:
        variants=f"{OUT}/variants/labelled.parquet",
        zeroshot=[f"{OUT}/scores.zeroshot.h5ad"] if config["score"]["enabled"] else [],
        probes=expand(f"{OUT}/probes/{{probe}}.h5ad", probe=PROBES),
    output:
        h5ad=f"{OUT}/scores.h5ad",
        parquet=f"{OUT}/scores.parquet",
    params:
        tables=lambda wc, input: " ".join([*input.get("zeroshot", []), *input.probes]),
    log:
        f"{OUT}/logs/finalize_scores.log",
    resources:
        mem_mb=res("light", "mem_mb"),
        runtime=res("light", "runtime"),
    conda:
        "../envs/biointerp.yaml"
    run:
        biointerp_job(
            "pipeline finalize --variants {input.variants} {params.tables} "
            "--out {output.h5ad} --parquet {output.parquet}"
        )


rule build_database:
    input:
        f"{OUT}/scores.h5ad",
    output:
        f"{OUT}/variants.duckdb",
    params:
        model=config["model"],
        probes=",".join(PROBES) or "none",
    log:
        f"{OUT}/logs/build_database.log",
    resources:
        mem_mb=res("light", "mem_mb"),
        runtime=res("light", "runtime"),
    conda:
        "../envs/biointerp.yaml"
    run:
        biointerp_job(
            "db build {input} --out {output} --model {params.model} "
            "--probe {params.probes} --force"
        )


rule annotate_vcf:
    input:
        vcf=config["variants"],
        db=f"{OUT}/variants.duckdb",
    output:
        f"{OUT}/annotated.vcf.gz",
    log:
        f"{OUT}/logs/annotate_vcf.log",
    resources:
        mem_mb=res("light", "mem_mb"),
        runtime=res("light", "runtime"),
    conda:
        "../envs/biointerp.yaml"
    run:
        biointerp_job("db annotate {input.vcf} --db {input.db} -o {output}")
