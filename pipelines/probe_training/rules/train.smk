# Split labelled variants, train probes on the harvested activations, evaluate.


rule split_variants:
    input:
        f"{OUT}/variants/labelled.parquet",
    output:
        f"{TRAIN}/split.parquet",
    params:
        by=config["split"]["by"],
        column=f"--column {config['split']['column']}" if config["split"]["column"] else "",
        test_fraction=config["split"]["test_fraction"],
        val_fraction=config["split"]["val_fraction"],
        seed=config["split"]["seed"],
    log:
        f"{OUT}/logs/split_variants.log",
    resources:
        mem_mb=res("light", "mem_mb"),
        runtime=res("light", "runtime"),
    conda:
        "../../variant_scoring/envs/biointerp.yaml"
    run:
        biointerp_job(
            "pipeline split {input} --by {params.by} {params.column} "
            "--test-fraction {params.test_fraction} --val-fraction {params.val_fraction} "
            "--seed {params.seed} --out {output}"
        )


rule train_probe:
    input:
        labels=f"{TRAIN}/split.parquet",
        stores=shard_stores(),
    output:
        f"{TRAIN}/probes/{{kind}}.safetensors",
    params:
        stores=lambda wc, input: " ".join(f"--store {s}" for s in input.stores),
        extra=lambda wc: config["train"]["extra"].get(wc.kind, ""),
        n_boot=config["evaluate"]["n_boot"],
        seed=config["split"]["seed"],
    log:
        f"{OUT}/logs/train_probe.{{kind}}.log",
    wildcard_constraints:
        kind="linear|covariance",
    threads: res("train", "threads")
    resources:
        gpu=res("train", "gpu"),
        mem_mb=res("train", "mem_mb"),
        runtime=res("train", "runtime"),
    conda:
        "../../variant_scoring/envs/biointerp.yaml"
    run:
        biointerp_job(
            "probe train --kind {wildcards.kind} {params.stores} "
            "--labels {input.labels} --label-column label --split-column split "
            "--n-boot {params.n_boot} --seed {params.seed} --out {output} {params.extra}"
        )


rule evaluate_probe:
    input:
        probe=f"{TRAIN}/probes/{{kind}}.safetensors",
        labels=f"{TRAIN}/split.parquet",
        stores=shard_stores(),
    output:
        json=f"{TRAIN}/eval/{{kind}}.json",
        plots=directory(f"{TRAIN}/eval/{{kind}}"),
    params:
        stores=lambda wc, input: " ".join(f"--store {s}" for s in input.stores),
        n_boot=config["evaluate"]["n_boot"],
    log:
        f"{OUT}/logs/evaluate_probe.{{kind}}.log",
    wildcard_constraints:
        kind="linear|covariance",
    threads: res("model", "threads")
    resources:
        mem_mb=res("model", "mem_mb"),
        runtime=res("model", "runtime"),
    conda:
        "../../variant_scoring/envs/biointerp.yaml"
    run:
        biointerp_job(
            "probe evaluate --probe {input.probe} {params.stores} "
            "--labels {input.labels} --label-column label --split-column split --split test "
            "--n-boot {params.n_boot} --out {output.json} --out-dir {output.plots}"
        )


rule training_report:
    input:
        evals=expand(f"{TRAIN}/eval/{{kind}}.json", kind=KINDS),
        labels=f"{TRAIN}/split.parquet",
        zeroshot=f"{OUT}/scores.zeroshot.h5ad" if config["score"]["enabled"] else [],
    output:
        report=f"{TRAIN}/report/report.md",
        summary=f"{TRAIN}/report/summary.tsv",
    params:
        outdir=lambda wc, output: str(Path(output.report).parent),
        zeroshot=lambda wc, input: f"--scores {input.zeroshot}" if input.zeroshot else "",
        n_boot=config["evaluate"]["n_boot"],
    log:
        f"{OUT}/logs/training_report.log",
    resources:
        mem_mb=res("light", "mem_mb"),
        runtime=res("light", "runtime"),
    conda:
        "../../variant_scoring/envs/biointerp.yaml"
    run:
        biointerp_job(
            "pipeline training-report {input.evals} --labels {input.labels} "
            "{params.zeroshot} --n-boot {params.n_boot} --out-dir {params.outdir}"
        )
