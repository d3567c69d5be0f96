# Rules: (synthetic inputs) -> train SAE -> encode -> label -> dashboard; explain variants.

if config["synthetic"]["enabled"]:

    rule synth_inputs:
        output:
            fasta=config["fasta"],
            annotations=config["annotations"],
            variants=config["variants"] or f"{OUT}/inputs/variants.tsv",
        params:
            outdir=lambda wc, output: str(Path(output.fasta).parent),
            preset=config["synthetic"]["preset"],
            seed=config["synthetic"]["seed"],
            extra=config["synthetic"]["extra"],
        log:
            f"{OUT}/logs/synth_inputs.log",
        conda:
            "../../variant_scoring/envs/biointerp.yaml"
        shell:
            "biointerp synth genome --out {params.outdir} --preset {params.preset} "
            "--seed {params.seed} {params.extra} > {log} 2>&1"


rule train_sae:
    input:
        fasta=config["fasta"],
    output:
        sae=f"{OUT}/sae/sae.safetensors",
        card=f"{OUT}/sae/sae.json",
    params:
        model=config["model"],
        layer=config["layer"],
        regions=region_args(config["train"]["regions"]),
        untied="" if config["train"]["tied"] else "--untied",
        standardize="--standardize" if config["train"].get("standardize") else "",
        t=config["train"],
        device=config["device"],
    log:
        f"{OUT}/logs/train_sae.log",
    threads: res("model", "threads")
    resources:
        gpu=res("model", "gpu"),
        mem_mb=res("model", "mem_mb"),
        runtime=res("model", "runtime"),
    conda:
        "../../variant_scoring/envs/biointerp.yaml"
    shell:
        "biointerp features train --model {params.model} --layer {params.layer} --fasta {input.fasta} "
        "{params.regions} --latents {params.t[latents]} -k {params.t[k]} --kind {params.t[kind]} {params.untied} {params.standardize} "
        "--steps {params.t[steps]} --batch-size {params.t[batch_size]} --device {params.device} "
        "--out {output.sae} > {log} 2>&1"


rule encode_features:
    input:
        fasta=config["fasta"],
        sae=f"{OUT}/sae/sae.safetensors",
    output:
        f"{OUT}/features/features.h5ad",
    params:
        model=config["model"],
        regions=region_args(config["encode"]["regions"]),
        device=config["device"],
    log:
        f"{OUT}/logs/encode_features.log",
    threads: res("model", "threads")
    resources:
        gpu=res("model", "gpu"),
        mem_mb=res("model", "mem_mb"),
        runtime=res("model", "runtime"),
    conda:
        "../../variant_scoring/envs/biointerp.yaml"
    shell:
        "biointerp features encode --model {params.model} --sae {input.sae} --fasta {input.fasta} "
        "{params.regions} --device {params.device} --out {output} > {log} 2>&1"


rule label_features:
    input:
        features=f"{OUT}/features/features.h5ad",
        annotations=config["annotations"],
    output:
        table=f"{OUT}/features/labelled.h5ad",
        scores=f"{OUT}/features/label_scores.parquet",
    params:
        stranded="--stranded" if config["label"]["stranded"] else "",
        by=config["label"]["by"],
        min_score=config["label"]["min_score"],
    log:
        f"{OUT}/logs/label_features.log",
    resources:
        mem_mb=res("light", "mem_mb"),
        runtime=res("light", "runtime"),
    conda:
        "../../variant_scoring/envs/biointerp.yaml"
    shell:
        "biointerp features label --features {input.features} --annotations {input.annotations} "
        "{params.stranded} --by {params.by} --min-score {params.min_score} "
        "--out {output.table} --scores {output.scores} > {log} 2>&1"


rule dashboard:
    input:
        table=f"{OUT}/features/labelled.h5ad",
        fasta=config["fasta"],
        annotations=config["annotations"],
    output:
        f"{OUT}/dashboard/index.html",
    params:
        outdir=lambda wc, output: str(Path(output[0]).parent),
        top=config["dashboard"]["top"],
    log:
        f"{OUT}/logs/dashboard.log",
    resources:
        mem_mb=res("light", "mem_mb"),
        runtime=res("light", "runtime"),
    conda:
        "../../variant_scoring/envs/biointerp.yaml"
    shell:
        "biointerp features dashboard --features {input.table} --fasta {input.fasta} "
        "--annotations {input.annotations} --top {params.top} --out {params.outdir} > {log} 2>&1"


rule explain_variants:
    input:
        fasta=config["fasta"],
        sae=f"{OUT}/sae/sae.safetensors",
        labels=f"{OUT}/features/labelled.h5ad",
        variants=config["variants"] or f"{OUT}/inputs/variants.tsv",
    output:
        f"{OUT}/explain/explanations.parquet",
    params:
        model=config["model"],
        top=config["explain"]["top"],
        device=config["device"],
    log:
        f"{OUT}/logs/explain_variants.log",
    threads: res("model", "threads")
    resources:
        gpu=res("model", "gpu"),
        mem_mb=res("model", "mem_mb"),
        runtime=res("model", "runtime"),
    conda:
        "../../variant_scoring/envs/biointerp.yaml"
    shell:
        "biointerp features explain --model {params.model} --sae {input.sae} --fasta {input.fasta} "
        "--variants {input.variants} --labels {input.labels} --top {params.top} --device {params.device} "
        "--out {output} > {log} 2>&1"
