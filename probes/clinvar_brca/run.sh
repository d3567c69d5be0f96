#!/usr/bin/env bash
# ClinVar (2016-11-02) BRCA1 + BRCA2 regions: zero-shot delta log-likelihood vs a
# linear probe vs a covariance probe, trained on BRCA1 variants and tested on
# BRCA2 variants (the test gene is never seen in training or validation).
#
#   MODEL=demo LAYER=blocks.2 bash probes/clinvar_brca/run.sh
#   RECIPE=genomic ... bash probes/clinvar_brca/run.sh   # the other harvest recipe, same OUT (shares
#                                                          # the variant tables and zero-shot scores)
#
# The evaluation puts every score beside model-free baselines fitted on BRCA1 only
# (variant class, substitution type, indel length, their logistic combination), per variant class.
#
# Only pathogenic / benign records (any review status) are scored and harvested;
# everything else ("other") is counted by `variants check` and left out here.
set -euo pipefail
MODEL=${MODEL:-demo}
LAYER=${LAYER:-blocks.2}
OUT=${OUT:-results/clinvar_brca}
K=${K:-32}
FIXED=${FIXED:-$((K / 4))}   # fixed window after the variant (EVEE: 64 of K=256)
UP=${UP:-512}
DOWN=${DOWN:-512}
WINDOW=${WINDOW:-1024}
NBOOT=${NBOOT:-1000}
LIMIT=${LIMIT:-0}   # >0: only the first LIMIT labelled variants per region (smoke runs)
RECIPE=${RECIPE:-evee}   # harvest recipe: evee (EVEE's public harvest) or genomic (ours)
PAIRING=${PAIRING:-}     # probe input; empty = the recipe's own (evee: index = var_same - ref_same; genomic: genomic)
ROOTS=${ROOTS:-}   # e.g. "sym_eigh gram_eigh": also train covariance probes with a true matrix square root
BI=${BI:-.venv/bin/biointerp}
PY=${PY:-.venv/bin/python}
DATA=${DATA:-../shared/data}
VCF=$DATA/variants/clinvar_20161102.GRCh37.vcf.gz
mkdir -p "$OUT"

for spec in brca1:17:41100001-41300000 brca2:13:32800001-33000000; do
  IFS=: read -r name chrom range <<<"$spec"
  fa=$DATA/reference/${name}_region.GRCh37.fa
  [ -s "$OUT/$name.variants.parquet" ] || \
    $BI variants check --fasta "$fa" --vcf "$VCF" --region "$chrom:$range" --label --out "$OUT/$name.variants.parquet"
  $PY - "$OUT/$name.variants.parquet" "$OUT/$name.labelled.parquet" "$LIMIT" <<'PY'
import sys, pandas as pd
d = pd.read_parquet(sys.argv[1])
d = d[d["label"].isin(["pathogenic", "benign"])]
if int(sys.argv[3]) > 0:
    d = d.sample(n=min(int(sys.argv[3]), len(d)), random_state=0).sort_values("pos")
d.to_parquet(sys.argv[2], index=False)
print(f"{sys.argv[2]}: {len(d)} labelled ({d['label'].value_counts().to_dict()}), status {d['status'].value_counts().to_dict()}")
PY
  [ -s "$OUT/$name.zeroshot.h5ad" ] || \
    $BI score --model "$MODEL" --fasta "$fa" --variants "$OUT/$name.labelled.parquet" --window "$WINDOW" \
      --strand both --out "$OUT/$name.zeroshot.h5ad"
  $BI harvest --model "$MODEL" --fasta "$fa" --variants "$OUT/$name.labelled.parquet" --layer "$LAYER" \
    --view evee --recipe "$RECIPE" -K "$K" --fixed "$FIXED" --upstream "$UP" --downstream "$DOWN" \
    --store "$OUT/$name.$RECIPE.store"
done

# labels + split: BRCA1 -> train (85%) / val (15%, random, seeded), BRCA2 -> test
$PY - "$OUT" <<'PY'
import sys, numpy as np, pandas as pd
out = sys.argv[1]
d = pd.concat([pd.read_parquet(f"{out}/{g}.labelled.parquet").assign(region=g) for g in ("brca1", "brca2")])
rng = np.random.default_rng(0)
d["split"] = np.where(d["region"] == "brca2", "test", np.where(rng.uniform(size=len(d)) < 0.15, "val", "train"))
lr, la = d["ref"].str.len(), d["alt"].str.len()
d["variant_type"] = np.where((lr == 1) & (la == 1), "snv", np.where(lr > la, "deletion", np.where(lr < la, "insertion", "mnv")))
# a model-free reference score: indels are mostly pathogenic in these genes
d["indel_baseline"] = (d["variant_type"] != "snv").astype(float)
d.to_parquet(f"{out}/labels.parquet", index=False)
print(pd.crosstab(d["split"], d["label"]))
PY

STORES="--store $OUT/brca1.$RECIPE.store --store $OUT/brca2.$RECIPE.store"
R=$OUT/$RECIPE
mkdir -p "$R"
# covariance probes: EVEE's Newton-Schulz polynomial (covariance) and, with ROOTS, the true-root options
# at the same budget (same h, p, lr, epochs, patience, seed); wall time of each training in train_seconds.tsv
# (a probe whose .safetensors and train_seconds.tsv row exist is kept: rerun to resume after a timeout)
[ -s "$R/train_seconds.tsv" ] || printf "probe\tseconds\n" > "$R/train_seconds.tsv"
SCORES=""
for spec in linear:linear covariance:newton_schulz $(for r in $ROOTS; do echo "covariance_$r:$r"; done); do
  IFS=: read -r name root <<<"$spec"
  kind=$([ "$name" = linear ] && echo linear || echo covariance)
  SCORES="$SCORES $name"
  if [ -s "$R/$name.safetensors" ] && cut -f1 "$R/train_seconds.tsv" | grep -qx "$name"; then
    echo "run.sh: $R/$name.safetensors exists, not retrained" >&2; continue
  fi
  t0=$SECONDS
  $BI probe train --kind "$kind" $STORES --labels "$OUT/labels.parquet" --split-column split ${PAIRING:+--pairing "$PAIRING"} \
    --h 16 --p 32 --lr 1e-3 --epochs 60 --patience 8 --n-boot "$NBOOT" --calibrate platt --strata variant_type \
    $([ "$kind" = covariance ] && echo "--root $root") --report-dir "$R/report_$name" --out "$R/$name.safetensors"
  printf "%s\t%s\n" "$name" $((SECONDS - t0)) >> "$R/train_seconds.tsv"
done

$BI tables merge "$OUT/brca1.zeroshot.h5ad" "$OUT/brca2.zeroshot.h5ad" --out "$R/scores.h5ad"
EVAL=""
for name in $SCORES; do
  $BI probe apply --probe "$R/$name.safetensors" $STORES --scores "$R/scores.h5ad" --name "probe_$name" \
    --out "$R/scores.h5ad"
  EVAL="$EVAL --score probe_$name"
done
# every score beside the model-free baselines (fitted on BRCA1 = the train split), per variant class
$BI probe evaluate --scores "$R/scores.h5ad" --labels "$OUT/labels.parquet" --label-column label \
  --split-column split --split test --strata variant_type --n-boot "$NBOOT" \
  $EVAL --score -delta_ll --out "$R/eval.json" --out-dir "$R/eval"
