# Samples x features: model embeddings of the per-sample sequences, or the feature matrix as given.


if SEQUENCE_PATH:

    rule embed_samples:
        input:
            f"{OUT}/sequences/report.json",
        output:
            f"{OUT}/features.h5ad",
        params:
            seqs=lambda wc, input: str(Path(input[0]).parent),
            layers=opt("--layer", config["embed"]["layers"]),
            poolings=opt("--pooling", config["embed"]["poolings"]),
            encodings=opt("--encoding", config["embed"]["encodings"]),
            e=config["embed"],
            model=config["model"],
            device=config["device"],
        log:
            f"{OUT}/logs/embed_samples.log",
        threads: res("model", "threads")
        resources:
            gpu=res("model", "gpu"),
            mem_mb=res("model", "mem_mb"),
            runtime=res("model", "runtime"),
        retries: config["retries"]
        conda:
            "../../variant_scoring/envs/biointerp.yaml"
        run:
            biointerp_job(
                "cohort embed --sequences {params.seqs} --model {params.model} --device {params.device} "
                "{params.layers} {params.poolings} {params.encodings} --region-pool {params.e[region_pool]} "
                "--track-pool {params.e[track_pool]} --batch-size {params.e[batch_size]} --out {output}"
            )

else:

    rule load_matrix:
        input:
            matrix=INP["matrix"],
            samples=INP["samples"],
        output:
            f"{OUT}/features.h5ad",
        params:
            labels=label_args(),
        log:
            f"{OUT}/logs/load_matrix.log",
        resources:
            mem_mb=res("light", "mem_mb"),
            runtime=res("light", "runtime"),
        conda:
            "../../variant_scoring/envs/biointerp.yaml"
        run:
            biointerp_job(
                "cohort biomarkers --matrix {input.matrix} --samples {input.samples} {params.labels} "
                "--no-probe --out {output}"
            )
