# Report: summary table, status counts, score distributions, ROC per class.


rule scoring_report:
    input:
        f"{OUT}/scores.h5ad",
    output:
        report=f"{OUT}/report/report.md",
        summary=f"{OUT}/report/summary.tsv",
    params:
        outdir=lambda wc, output: str(Path(output.report).parent),
    log:
        f"{OUT}/logs/report.log",
    resources:
        mem_mb=res("light", "mem_mb"),
        runtime=res("light", "runtime"),
    conda:
        "../envs/biointerp.yaml"
    run:
        biointerp_job("pipeline report --scores {input} --out-dir {params.outdir}")
