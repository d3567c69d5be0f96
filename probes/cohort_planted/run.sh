#!/usr/bin/env bash
# Planted-truth acceptance of the cohort-from-sequence path with the demo model.
# A VCF cohort and a methylation cohort on the demo model's own synthetic genome: cases carry
# alleles (VCF) or gain methylation (methylation) in planted regions, a `batch` confounder
# (more cases in batch B) drives other regions. Reports precision at k of the planted regions
# among the top candidate regions and the cross-validated AUROC, raw and with batch regressed
# out, each against a label-permutation control.
#
#   MODEL=demo LAYER=blocks.4 bash probes/cohort_planted/run.sh
set -euo pipefail
MODEL=${MODEL:-demo}
LAYER=${LAYER:-blocks.4}
OUT=${OUT:-results/cohort_planted}
CASES=${CASES:-40}
CONTROLS=${CONTROLS:-40}
REGIONS=${REGIONS:-12}
NPERM=${NPERM:-20}
BI=${BI:-biointerp}
mkdir -p "$OUT"
# --- VCF path
$BI cohort simulate --kind vcf --out "$OUT/vcf/sim" --cases "$CASES" --controls "$CONTROLS" --regions "$REGIONS" \
  --causal 2 --confounded 2 --unphased-frac 0.1
$BI cohort sequences --samples "$OUT/vcf/sim/samples.tsv" --vcf "$OUT/vcf/sim/cohort.vcf.gz" \
  --fasta "$OUT/vcf/sim/genome.fa" --regions "$OUT/vcf/sim/regions.bed" --covariate batch --out "$OUT/vcf/seqs"
$BI cohort embed --sequences "$OUT/vcf/seqs" --model "$MODEL" --layer "$LAYER" --out "$OUT/vcf/features.h5ad"
$BI cohort biomarkers --features "$OUT/vcf/features.h5ad" --adjust batch --no-probe --top 10 --out-dir "$OUT/vcf/candidates"
$BI cohort evaluate-planted --features "$OUT/vcf/features.h5ad" --truth "$OUT/vcf/sim/truth.tsv" --n-perm "$NPERM" \
  --out "$OUT/vcf/planted.json"
# --- methylation path (both encodings)
$BI cohort simulate --kind methylation --out "$OUT/meth/sim" --cases "$CASES" --controls "$CONTROLS" \
  --regions "$REGIONS" --causal 3 --confounded 2
$BI cohort sequences --samples "$OUT/meth/sim/samples.tsv" --beta "$OUT/meth/sim/methylation_beta.tsv.gz" \
  --fasta "$OUT/meth/sim/genome.fa" --regions "$OUT/meth/sim/regions.bed" --covariate batch --out "$OUT/meth/seqs"
for enc in bisulfite extended; do
  $BI cohort embed --sequences "$OUT/meth/seqs" --model "$MODEL" --layer "$LAYER" --encoding "$enc" \
    --out "$OUT/meth/features.$enc.h5ad"
  $BI cohort evaluate-planted --features "$OUT/meth/features.$enc.h5ad" --truth "$OUT/meth/sim/truth.tsv" \
    --n-perm "$NPERM" --out "$OUT/meth/planted.$enc.json"
done
$BI cohort biomarkers --features "$OUT/meth/features.bisulfite.h5ad" --adjust batch --no-probe --top 10 \
  --out-dir "$OUT/meth/candidates"
