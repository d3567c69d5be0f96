"""The features step of ``biointerp demo``: a small SAE on the demo model in a few seconds."""

from __future__ import annotations

import time
from pathlib import Path


def feature_demo(inputs_dir: str | Path, out_dir: str | Path, model_spec: str = "demo", steps: int = 150,
                 train_rows: int = 8192, label_bases: int = 8000) -> dict:
    """Train an SAE on the middle layer on ``train_rows`` positions of the training contigs, label it on
    the first ``label_bases`` of the held-out contig against ``elements.gff3``, explain the
    held-out variants there (``biointerp features dashboard`` draws the latents). Writes under
    ``out_dir``; returns a summary."""
    import pandas as pd

    from biointerp.features.explain import explain_variants
    from biointerp.features.label import best_labels, best_per_class, encode_genome, feature_table, label_latents, read_annotations
    from biointerp.features.sae import save_sae
    from biointerp.features.train import TensorRows, collect_rows, evaluate_sae, train_sae
    from biointerp.genome import Genome
    from biointerp.models import load_model
    from biointerp.synth import middle_layer

    t0 = time.perf_counter()
    inputs, out = Path(inputs_dir), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    genome = Genome(inputs / "genome.fa")
    model = load_model(model_spec)
    layer = middle_layer(model)
    test = list(getattr(model, "card", {}).get("data", {}).get("excluded_contigs", [])) or genome.contigs[-1:]
    train = [c for c in genome.contigs if c not in test]
    per = 3 * train_rows // len(train)  # rows come from random windows of these stretches
    rows = collect_rows(model, {c: genome.fetch(c, 1, per) for c in train}, layer, train_rows)
    sae, rep = train_sae(TensorRows(rows, 512), model.d_model, 128, 8, steps=steps, lr=2e-3, engine="plain",
                         standardize=True)
    tc = test[0]
    held = genome.fetch(tc, 1, label_bases)
    ev = evaluate_sae(model, sae, layer, [held[i:i + 512] for i in range(0, 4 * 512, 512)])
    save_sae(sae, out / "sae.safetensors", layer=layer, model=model.name, train=rep["final"], eval=ev)
    X, obs = encode_genome(model, sae, {tc: held}, layer)
    ann = read_annotations(inputs / "elements.gff3")
    ann = ann[ann["chrom"] == tc]
    scores = label_latents(X, obs, ann, classes=["exon", "five_prime_cis_splice_site", "TF_binding_site",
                                                  "CpG_island", "intron", "polypeptide_domain"])
    table = feature_table(X, obs, scores, card=sae.card(layer=layer, model=model.name))
    table.write_h5ad(out / "features.h5ad")
    best = best_per_class(scores, "f1")
    vpath = inputs / "variants.tsv"
    n_expl = 0
    if vpath.exists():
        v = pd.read_csv(vpath, sep="\t")
        v = v[(v["chrom"] == tc) & (v["pos"] <= label_bases - 64)]
        if len(v):
            e = explain_variants(model, sae, layer, {tc: held}, v, labels=best_labels(scores, 0.2), top=5)
            e.to_parquet(out / "explanations.parquet")
            n_expl = int(v["variant_id"].nunique())
    return {"layer": layer, "explained_variance": ev["explained_variance"], "loss_recovered": ev["loss_recovered"],
            "best": best[["latent", "f1", "auroc", "element_auroc"]], "n_explained": n_expl,
            "seconds": time.perf_counter() - t0, "out": out}
