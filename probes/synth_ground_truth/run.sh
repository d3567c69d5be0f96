#!/usr/bin/env bash
# Ground truth: the synthetic model organism (`biointerp synth genome --preset demo --seed 0`,
# the genome the bundled demo model was trained on, contig synth4 held out of LM training).
# Labels follow the planted biology (damaging / neutral). Probes train on synth1-3
# variants (validation carved out by gene) and are tested on synth4 variants.
#
#   bash probes/synth_ground_truth/run.sh
set -euo pipefail
MODEL=${MODEL:-demo}
LAYER=${LAYER:-blocks.6}
OUT=${OUT:-results/synth_ground_truth}
K=${K:-32}
FIXED=${FIXED:-$((K / 4))}
UP=${UP:-512}
DOWN=${DOWN:-512}
WINDOW=${WINDOW:-1024}
NBOOT=${NBOOT:-1000}
BI=${BI:-.venv/bin/biointerp}
mkdir -p "$OUT"
[ -s "$OUT/synth/variants.tsv" ] || $BI synth genome --preset demo --seed 0 --out "$OUT/synth"
FA=$OUT/synth/genome.fa
V=$OUT/synth/variants.tsv
[ -s "$OUT/zeroshot.h5ad" ] || \
  $BI score --model "$MODEL" --fasta "$FA" --variants "$V" --window "$WINDOW" --strand both --out "$OUT/zeroshot.h5ad"
$BI harvest --model "$MODEL" --fasta "$FA" --variants "$V" --layer "$LAYER" --view evee -K "$K" --fixed "$FIXED" \
  --upstream "$UP" --downstream "$DOWN" --store "$OUT/store"
for kind in linear covariance; do
  $BI probe train --kind "$kind" --store "$OUT/store" --labels "$V" --split-column split --split gene \
    --h 16 --p 32 --lr 1e-3 --epochs 60 --patience 8 --n-boot "$NBOOT" --calibrate platt --strata consequence \
    --report-dir "$OUT/report_$kind" --out "$OUT/$kind.safetensors"
done
$BI probe apply --probe "$OUT/linear.safetensors" --store "$OUT/store" --scores "$OUT/zeroshot.h5ad" --name probe_linear --out "$OUT/scores.h5ad"
$BI probe apply --probe "$OUT/covariance.safetensors" --store "$OUT/store" --scores "$OUT/scores.h5ad" --name probe_covariance --out "$OUT/scores.h5ad"
$BI probe evaluate --scores "$OUT/scores.h5ad" --labels "$V" --label-column label --split-column split --split test \
  --strata consequence --n-boot "$NBOOT" --score probe_linear --score probe_covariance --score -delta_ll --out-dir "$OUT/eval"
