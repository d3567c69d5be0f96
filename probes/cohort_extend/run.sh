#!/usr/bin/env bash
# Extending a variant probe to a new "cohort": a linear probe trained on the BRCA1 region's
# ClinVar (2016) pathogenic/benign variants, extended to the BRCA2 region's variants.
# Learning curve (n = 20, 50, 100, 200, all) of fine-tuned vs from-scratch vs frozen on a fixed
# held-out half of BRCA2 (REPEATS draws per size), beside the model-free baselines (variant class,
# substitution type, both) fitted on the same training rows and on BRCA1, overall and within SNVs.
# First a check that the features carry signal at all (5-fold CV within each region).
#
#   MODEL=demo LAYER=blocks.6 bash probes/cohort_extend/run.sh
set -euo pipefail
MODEL=${MODEL:-demo}
LAYER=${LAYER:-blocks.6}
OUT=${OUT:-results/cohort_extend}
UP=${UP:-128}
DOWN=${DOWN:-128}
LIMIT=${LIMIT:-0}   # >0: at most LIMIT labelled variants per region
REPEATS=${REPEATS:-10}
NBOOT=${NBOOT:-200}
BI=${BI:-biointerp}
PY=${PY:-python}
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
d = d[d["label"].isin(["pathogenic", "benign"]) & (d["status"] == "ok")]
if int(sys.argv[3]) > 0:
    d = d.sample(n=min(int(sys.argv[3]), len(d)), random_state=0).sort_values("pos")
d.to_parquet(sys.argv[2], index=False)
print(f"{sys.argv[2]}: {len(d)} labelled {d['label'].value_counts().to_dict()}")
PY
  [ -f "$OUT/$name.store/manifest.json" ] && [ -s "$OUT/$name.store/index.parquet" ] && \
    [ "$($PY -c "import pandas as pd,sys; print(len(pd.read_parquet(sys.argv[1])))" "$OUT/$name.store/index.parquet")" -ge \
      "$($PY -c "import pandas as pd,sys; print(len(pd.read_parquet(sys.argv[1])))" "$OUT/$name.labelled.parquet")" ] || \
  $BI harvest --model "$MODEL" --fasta "$fa" --variants "$OUT/$name.labelled.parquet" --layer "$LAYER" \
    --view mean --upstream "$UP" --downstream "$DOWN" --store "$OUT/$name.store"
done
# source probe: BRCA1 only (85% train / 15% validation)
$PY - "$OUT" <<'PY'
import sys, numpy as np, pandas as pd
out = sys.argv[1]
d = pd.read_parquet(f"{out}/brca1.labelled.parquet")
d["split"] = np.where(np.random.default_rng(0).uniform(size=len(d)) < 0.15, "val", "train")
d.to_parquet(f"{out}/brca1.split.parquet", index=False)
PY
[ -s "$OUT/brca1_linear.safetensors" ] || \
$BI probe train --kind linear --store "$OUT/brca1.store" --labels "$OUT/brca1.split.parquet" --split-column split \
  --tensor "emb.$LAYER.mean" --out "$OUT/brca1_linear.safetensors"
echo "== do the features carry signal? 5-fold CV within each region"
$PY probes/cohort_extend/signal_check.py "$OUT/brca1_linear.safetensors" "$OUT/signal_check.tsv" \
  "brca1=$OUT/brca1.store:$OUT/brca1.labelled.parquet" "brca2=$OUT/brca2.store:$OUT/brca2.labelled.parquet"
echo "== learning curve BRCA1 -> BRCA2"
$BI cohort extend --probe "$OUT/brca1_linear.safetensors" --store "$OUT/brca2.store" \
  --labels "$OUT/brca2.labelled.parquet" --source-labels "$OUT/brca1.labelled.parquet" --label-column label \
  --repeats "$REPEATS" --n-boot "$NBOOT" --out-dir "$OUT/extend"
