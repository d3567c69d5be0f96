"""Zero-shot indel scores on ClinVar BRCA2 indels: mean vs sum vs length-aware (aligned), beside
the model-free indel-length baseline (pathogenic rate per length bin, fitted on BRCA1 indels).

    python probes/clinvar_brca/indels.py --train results/clinvar500/brca1.variants.parquet \\
        --mean results/indels/brca2.mean.h5ad --aligned results/indels/brca2.aligned.h5ad --out results/indels

The two score tables come from `biointerp score --reduce mean` and `--reduce aligned` on the same
indels (same window and strands); the summed Δ is ``delta_ll + delta_ll_allele`` of the aligned run
(upstream tokens cancel in a causal model). Every score is negated (lower likelihood = damaging).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from biointerp.probes.baselines import with_baselines
from biointerp.probes.evaluate import binary_labels, comparison_markdown
from biointerp.tables import read_scores


def _table(path: str) -> pd.DataFrame:
    a = read_scores(path)
    df = a.obs.copy()
    for j, c in enumerate(a.var_names):
        df[str(c)] = np.asarray(a.X[:, j], dtype=float)
    return df


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", required=True, help="BRCA1 variants (labels): the baselines are fitted on its indels")
    ap.add_argument("--mean", required=True, help="scores table of `biointerp score --reduce mean`")
    ap.add_argument("--aligned", required=True, help="scores table of `biointerp score --reduce aligned`")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--out", required=True, help="folder for indels.md and indels.json")
    a = ap.parse_args()
    tr = pd.read_parquet(a.train)
    tr = tr[tr["label"].isin(["pathogenic", "benign"]) & (tr["ref"].str.len() != tr["alt"].str.len())]
    mean, al = _table(a.mean), _table(a.aligned)
    te = mean[["ref", "alt", "label", "status"]].copy()
    te = te[te["status"].astype(str) == "ok"]
    scores = {"zero-shot mean Δ (default)": -mean.loc[te.index, "delta_ll"],
              "zero-shot sum Δ": -(al.loc[te.index, "delta_ll"] + al.loc[te.index, "delta_ll_allele"]),
              "zero-shot aligned flank Δ (length-aware)": -al.loc[te.index, "delta_ll"],
              "zero-shot alleles' own term": -al.loc[te.index, "delta_ll_allele"]}
    table = pd.concat([tr[["ref", "alt", "label"]].set_index(tr["variant_id"].astype(str)),
                       te[["ref", "alt", "label"]]])
    n_tr = len(tr)
    full = {k: np.r_[np.full(n_tr, np.nan), v.to_numpy(float)] for k, v in scores.items()}
    ev = np.r_[np.zeros(n_tr, bool), np.ones(len(te), bool)]
    cmp = with_baselines(table, binary_labels(table["label"]), full, ev, ~ev,
                         kinds={k: "zero-shot" for k in full}, zero_shot=False, n_boot=a.n_boot)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    md = comparison_markdown(cmp, cmp["baselines_fitted"] + ", BRCA1 indels")
    (out / "indels.md").write_text(f"# BRCA2 indels: zero-shot reductions vs the indel-length baseline\n\n"
                                   f"Test: {len(te)} BRCA2 indels; baselines fitted on {n_tr} BRCA1 indels.\n\n{md}")
    (out / "indels.json").write_text(json.dumps(cmp, indent=1, default=float))
    print(md)


if __name__ == "__main__":
    main()
