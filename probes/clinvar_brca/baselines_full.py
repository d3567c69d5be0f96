"""Model-free baselines on every labelled ClinVar 2016 BRCA2 variant, fitted on BRCA1 only.

    python probes/clinvar_brca/baselines_full.py results/clinvar_full/brca1.variants.parquet \\
        results/clinvar_full/brca2.variants.parquet probes/clinvar_brca/results_baselines_full

(the two tables are `biointerp variants check --label` outputs, as run.sh writes them).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

from biointerp.probes.baselines import with_baselines
from biointerp.probes.evaluate import binary_labels, comparison_markdown, comparison_tables

train, test, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
d = pd.concat([pd.read_parquet(train).assign(split="train"), pd.read_parquet(test).assign(split="test")])
d = d[d["label"].isin(["pathogenic", "benign"])]
d = d.set_index(d["variant_id"].astype(str))
ev = (d["split"] == "test").to_numpy()
cmp = with_baselines(d, binary_labels(d["label"]), {}, ev, ~ev, n_boot=1000)
out.mkdir(parents=True, exist_ok=True)
md = comparison_markdown(cmp, cmp["baselines_fitted"])
(out / "comparison.md").write_text("# BRCA2 (all labelled), model-free baselines fitted on BRCA1\n\n" + md)
comparison_tables(cmp)["long"].to_csv(out / "comparison.tsv", sep="\t", index=False)
(out / "comparison.json").write_text(json.dumps(cmp, indent=1, default=float))
print(md)
