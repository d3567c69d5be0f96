# Model jobs, one per shard: zero-shot scores and activation harvest.
# Reused as is by probe_training (include). These are the GPU jobs.


rule score_shard:
    input:
        fasta=config["fasta"],
        variants=f"{OUT}/variants/checked.parquet",
    output:
        f"{OUT}/shards/scores.{{shard}}.h5ad",
    params:
        model=config["model"],
        device=config["device"],
        window=config["score"]["window"],
        reduce=config["score"]["reduce"],
        strand=config["score"]["strand"],
        n_shards=config["n_shards"],
        extra=config["score"]["extra"],
    log:
        f"{OUT}/logs/score.{{shard}}.log",
    wildcard_constraints:
        shard=r"\d+",
    threads: res("model", "threads")
    # the model jobs are the critical path: start them before ready table jobs
    priority: 10
    retries: config["retries"]
    resources:
        gpu=res("model", "gpu"),
        mem_mb=res("model", "mem_mb"),
        runtime=res("model", "runtime"),
    conda:
        "../envs/biointerp.yaml"
    run:
        biointerp_job(
            "score --model {params.model} --device {params.device} "
            "--fasta {input.fasta} --variants {input.variants} --out {output} "
            "--window {params.window} --reduce {params.reduce} --strand {params.strand} "
            "--shard {wildcards.shard} --n-shards {params.n_shards} {params.extra}"
        )


rule harvest_shard:
    input:
        fasta=config["fasta"],
        variants=f"{OUT}/variants/checked.parquet",
    output:
        directory(f"{OUT}/shards/store.{{shard}}"),
    params:
        model=config["model"],
        device=config["device"],
        layers=layer_args(),
        view=config["harvest"]["view"],
        n_shards=config["n_shards"],
        extra=config["harvest"]["extra"],
    log:
        f"{OUT}/logs/harvest.{{shard}}.log",
    wildcard_constraints:
        shard=r"\d+",
    threads: res("model", "threads")
    # the model jobs are the critical path: start them before ready table jobs
    priority: 10
    retries: config["retries"]
    resources:
        gpu=res("model", "gpu"),
        mem_mb=res("model", "mem_mb"),
        runtime=res("model", "runtime"),
    conda:
        "../envs/biointerp.yaml"
    run:
        biointerp_job(
            "harvest --model {params.model} --device {params.device} "
            "--fasta {input.fasta} --variants {input.variants} {params.layers} "
            "--view {params.view} --store {output} "
            "--shard {wildcards.shard} --n-shards {params.n_shards} {params.extra}"
        )


rule merge_scores:
    input:
        shard_scores(),
    output:
        f"{OUT}/scores.zeroshot.h5ad",
    log:
        f"{OUT}/logs/merge_scores.log",
    resources:
        mem_mb=res("light", "mem_mb"),
        runtime=res("light", "runtime"),
    conda:
        "../envs/biointerp.yaml"
    run:
        biointerp_job("tables merge {input} --out {output}")
