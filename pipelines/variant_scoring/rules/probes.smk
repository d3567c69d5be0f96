# Apply trained probes to the harvested activations (one job per probe), so
# that changing a probe re-runs only the probe steps and what follows them.


rule apply_probe:
    input:
        probe=lambda wc: config["probes"][wc.probe],
        stores=shard_stores(),
        variants=f"{OUT}/variants/checked.parquet",
    output:
        f"{OUT}/probes/{{probe}}.h5ad",
    params:
        stores=lambda wc, input: " ".join(f"--store {s}" for s in input.stores),
    log:
        f"{OUT}/logs/apply_probe.{{probe}}.log",
    threads: res("model", "threads")
    resources:
        mem_mb=res("model", "mem_mb"),
        runtime=res("model", "runtime"),
    conda:
        "../envs/biointerp.yaml"
    run:
        biointerp_job(
            "probe apply --probe {input.probe} {params.stores} "
            "--variants {input.variants} --name probe_{wildcards.probe} --out {output}"
        )
