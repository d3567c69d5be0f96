"""Ground-truth check of the feature tools on the synthetic model organism.

For a model trained on a ``biointerp.synth`` genome (the demo model) and a
randomly initialised model of the same architecture, :func:`run_feature_ground_truth`
trains an SAE on a middle layer over the training contigs, labels its latents
against the planted annotation on the held-out contig, explains the held-out
damaging variants, and (for the trained model) runs the causal tests:
ablating the latent labelled with a chosen element class (by default splice donor, the
class the issue names, and CpG island, the class the labelling recovers best) and measuring the
log-likelihood change at real elements vs matched control positions, and
steering generation with its decoder direction, counting the element with the
organism's own consensus definitions (:func:`count_elements`); both against a
random latent of similar firing rate.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pandas as pd

from biointerp import synth

#: Element class -> regular expression of its planted consensus (forward strand).
CONSENSUS = {
    "five_prime_cis_splice_site": "|".join(synth.DONOR_CONSENSUS),
    "TATA_box": synth.TATA_BOX,
    "polyA_signal_sequence": synth.POLYA_SIGNAL,
    "TF_binding_site": "|".join(synth.TF_MOTIFS.values()),
    "CpG_island": "CG",  # islands are GC-rich stretches spared the background's CpG depletion
}


#: Short, rare element classes of the model organism (a few bases each; random windows rarely hold them).
SHORT_CLASSES = ("five_prime_cis_splice_site", "three_prime_cis_splice_site", "branch_site", "start_codon",
                 "stop_codon", "TF_binding_site", "TATA_box", "polyA_signal_sequence")


def count_elements(seqs: list[str], cls: str) -> float:
    """Occurrences per kb of ``cls``'s planted consensus (overlapping matches) in ``seqs``."""
    pat = re.compile(f"(?=({CONSENSUS[cls]}))")
    n = sum(len(pat.findall(s)) for s in seqs)
    return 1000.0 * n / max(sum(len(s) for s in seqs), 1)


def _genome_for(model) -> synth.SynthGenome:
    card = getattr(model, "card", {}) or {}
    files = card.get("data", {}).get("files", [])
    if not files or not files[0].get("synth"):
        raise ValueError("the model card names no biointerp.synth training genome")
    cfg = synth.SynthConfig(**{k: tuple(v) if isinstance(v, list) else v
                              for k, v in files[0]["synth"]["config"].items()})
    return synth.generate_genome(cfg)


def _element_windows(genome, chrom: str, cls: str, window: int, offset: int, n: int, seed: int):
    """Windows with a + strand element of type ``cls`` (a ``:strand`` suffix is dropped; CpG islands and
    the consensus counts do not depend on it) at ``offset``, and a length-matched control span in each."""
    cls = cls.split(":")[0]
    rng = np.random.default_rng(seed)
    seq = genome.contigs[chrom]
    el = genome.elements
    els = el[(el["chrom"] == chrom) & (el["type"] == cls) & (el["strand"] == "+")]
    cls_mask = synth.position_labels(el, chrom, len(seq), {"c": (cls,)})["c"]
    out = []
    for r in els.sample(frac=1.0, random_state=seed).itertuples(index=False):
        s0 = int(r.start) - 1 - offset
        if s0 < 0 or s0 + window > len(seq):
            continue
        L = min(int(r.end - r.start + 1), window - offset)  # long elements: the part inside the window
        w = seq[s0:s0 + window]
        # control: same length, same first base, >= 20 bp from the class, after the first 64 bases
        cands = [o for o in range(64, window - L) if abs(o - offset) > 20 and w[o] == w[offset]
                 and not cls_mask[s0 + o - 20:s0 + o + L + 20].any()]
        if not cands:
            continue
        out.append((w, offset, int(rng.choice(cands)), L))
        if len(out) >= n:
            break
    return out


def causal_tests(model, sae, layer: str, genome, labels: pd.DataFrame, chrom: str, cls: str,
                 n_windows: int = 48, window: int = 256, offset: int = 192, n_prompts: int = 32,
                 prompt_len: int = 32, n_tokens: int = 48, seed: int = 0) -> dict:
    """Ablation and steering tests of the latent best labelled ``cls`` vs a random latent."""
    from biointerp.features.intervene import generate, latent_edit, log_probs_with

    rng = np.random.default_rng(seed)
    by = labels[labels["class"] == cls].dropna(subset=["f1"])
    target = int(by.sort_values("f1", ascending=False)["latent"].iat[0])
    fr = labels.drop_duplicates("latent").set_index("latent")["firing_rate"]
    similar = fr[(fr > 0) & (fr.index != target) & (fr.between(fr[target] / 3, fr[target] * 3))]
    pool = similar.index.to_numpy() if len(similar) else fr[(fr > 0) & (fr.index != target)].index.to_numpy()
    control = int(rng.choice(pool))
    wins = _element_windows(genome, chrom, cls, window, offset, n_windows, seed)
    seqs = [w[0] for w in wins]
    clean = log_probs_with(model, seqs)
    res: dict = {"class": cls, "target_latent": target, "control_latent": control, "n_windows": len(seqs),
                 **{f"target_{c}": float(by.set_index("latent").loc[target, c]) for c in ("f1", "auroc", "element_auroc")}}

    def effect(lat: int) -> dict:
        lp = log_probs_with(model, seqs, layer, latent_edit(sae, lat, "ablate"))
        d = np.abs(lp - clean)
        el = np.array([d[i, o - 1:o - 1 + L].mean() for i, (_, o, _, L) in enumerate(wins)])
        ct = np.array([d[i, c - 1:c - 1 + L].mean() for i, (_, _, c, L) in enumerate(wins)])
        return {"element_dll": float(el.mean()), "control_dll": float(ct.mean()),
                "ratio": float(el.mean() / max(ct.mean(), 1e-12)), "element_vs_control_win_rate": float((el > ct).mean())}

    res["ablate_target"] = effect(target)
    res["ablate_random"] = effect(control)
    # steering generation from prompts cut from the held-out contig
    seq = genome.contigs[chrom]
    starts = rng.integers(0, len(seq) - prompt_len, size=n_prompts)
    prompts = [seq[s:s + prompt_len] for s in starts]
    strength = float(labels.drop_duplicates("latent").set_index("latent").loc[target, "max_activation"]) * 2
    gens = {"none": generate(model, prompts, n_tokens, seed=seed)}
    t = time.perf_counter()
    gens["target"] = generate(model, prompts, n_tokens, layer, latent_edit(sae, target, "steer", strength), seed=seed)
    gens["random"] = generate(model, prompts, n_tokens, layer, latent_edit(sae, control, "steer", strength), seed=seed)
    res["steer"] = {"strength": strength, "bases_per_condition": n_prompts * n_tokens,
                    "seconds": time.perf_counter() - t,
                    **{f"rate_per_kb_{k}": count_elements(v, cls.split(":")[0]) for k, v in gens.items()}}
    return res


class _RawActivations:
    """Stands in for an SAE in :func:`encode_genome`: its "latents" are the layer's own dimensions."""

    @staticmethod
    def encode(h):
        return h


def linear_probe_baseline(model, layer: str, genome, train_region: dict[str, tuple[int, int]],
                   test_region: dict[str, tuple[int, int]], stranded: bool = True, min_positions: int = 20,
                   seed: int = 0) -> pd.DataFrame:
    """Per annotation class, a *supervised* direction of ``layer``: a class-balanced logistic
    regression fitted on the positions of ``train_region``, scored on ``test_region`` with the
    labelling's own metrics (base AUROC, element AUROC, F1). The baseline for the SAE's
    unsupervised latents: where neither picks a class out, the layer does not separate it
    linearly. Not a strict bound: the regression optimizes log-loss, not F1, and top-k
    competition makes a latent more than one direction."""
    import scipy.sparse as sp
    from sklearn.linear_model import LogisticRegression

    from biointerp.features.label import annotation_classes, class_masks, encode_genome, label_latents

    def raw(region):
        return encode_genome(model, _RawActivations, {c: genome.contigs[c] for c in region}, layer, regions=region)

    X_tr, obs_tr = raw(train_region)
    X_te, obs_te = raw(test_region)
    X_tr, X_te = X_tr.toarray(), X_te.toarray()
    mu, sd = X_tr.mean(0), X_tr.std(0) + 1e-6
    classes = [c for c in annotation_classes(genome.elements, stranded=stranded)]
    Y_tr = class_masks(genome.elements, obs_tr, classes, stranded)
    Y_te = class_masks(genome.elements, obs_te, classes, stranded)
    keep = [i for i, c in enumerate(classes) if Y_tr[:, i].sum() >= min_positions and Y_te[:, i].sum() >= 1]
    scores = np.zeros((len(X_te), len(keep)), dtype=np.float32)
    for j, i in enumerate(keep):
        clf = LogisticRegression(C=1.0, max_iter=1000, class_weight="balanced", random_state=seed)
        clf.fit((X_tr - mu) / sd, Y_tr[:, i])
        s_ = clf.decision_function((X_te - mu) / sd)
        scores[:, j] = s_ - s_.min()  # non-negative like a latent; the order (all that is scored) unchanged
    kept = [classes[i] for i in keep]
    tab = label_latents(sp.csr_matrix(scores), obs_te, genome.elements, classes=kept, stranded=stranded)
    diag = tab[tab["class"] == np.array(kept)[tab["latent"].to_numpy()]]
    return diag.drop(columns="latent").set_index("class")


def run_feature_ground_truth(model_spec: str = "demo", layer: str | None = None, d_hidden: int = 256, k: int = 8,
                             steps: int = 1000, batch_size: int = 512, train_rows: int = 32_768,
                             label_bases: int | None = None, engine: str = "plain", standardize: bool = True,
                             causal_classes: tuple[str, ...] = ("five_prime_cis_splice_site:+", "CpG_island:-"),
                             causal: bool = True, with_control: bool = True, kind: str = "batch_topk",
                             enrich: float = 0.0, enrich_classes: tuple[str, ...] = SHORT_CLASSES,
                             probe_baseline: bool = False,
                             out_dir: str | Path | None = None, seed: int = 0, progress: bool = False) -> dict:
    """The whole check for the model and its random-init control; returns a JSON-able dict."""
    from biointerp.features.explain import explain_variants, matching_share
    from biointerp.features.label import best_labels, best_per_class, encode_genome, feature_table, label_latents
    from biointerp.features.sae import save_sae
    import torch

    from biointerp.features.train import TensorRows, collect_rows, element_rows, evaluate_sae, train_sae
    from biointerp.models import StripedHyenaModel, load_model, random_model

    model = load_model(model_spec)
    genome = _genome_for(model)
    test = list(model.card.get("data", {}).get("excluded_contigs", [])) or list(genome.contigs)[-1:]
    train = [c for c in genome.contigs if c not in test]
    layer = layer or synth.middle_layer(model)
    control = StripedHyenaModel(random_model(model.config, seed=int(model.card.get("train_config", {}).get("seed", 0))),
                                name="random-init control")
    tc = test[0]
    region = {tc: (1, label_bases or len(genome.contigs[tc]))}
    variants = synth.make_variants(genome, test_contigs=tuple(test))
    variants = variants[(variants["split"] == "test") & (variants["pos"] <= region[tc][1] - 64)].reset_index(drop=True)
    out: dict = {"setup": {"model": model_spec, "layer": layer, "d_hidden": d_hidden, "k": k, "steps": steps,
                           "batch_size": batch_size, "kind": kind, "enrich": enrich, "train_rows": train_rows, "engine": engine, "standardize": standardize, "train_contigs": train, "label_region": f"{tc}:{region[tc][0]}-{region[tc][1]}",
                           "n_variants": int(len(variants)), "seed": seed}}
    for name, m in (("model", model), ("control", control))[: 2 if with_control else 1]:
        t0 = time.perf_counter()
        rows = collect_rows(m, {c: genome.contigs[c] for c in train}, layer, train_rows, seed=seed)
        if enrich > 0:  # a share of the rows at short annotated elements of the training contigs
            n_el = int(round(enrich * train_rows))
            near = element_rows(m, {c: genome.contigs[c] for c in train}, genome.elements, enrich_classes, layer,
                                n_el, seed=seed)
            rows = torch.cat([rows[: train_rows - len(near)], near])
            rows = rows[torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed))]
        sae, rep = train_sae(TensorRows(rows, batch_size, seed), m.d_model, d_hidden, k, kind=kind, steps=steps, lr=1e-3,
                             seed=seed, engine=engine, standardize=standardize, progress=progress)
        evs = [genome.contigs[tc][i:i + 512] for i in range(0, 512 * 16, 512)]
        ev = evaluate_sae(m, sae, layer, evs)
        X, obs = encode_genome(m, sae, {tc: genome.contigs[tc]}, layer, regions=region, progress=progress)
        flat = label_latents(X, obs, genome.elements)  # classes = annotation types
        scores = label_latents(X, obs, genome.elements, stranded=True)  # type:+ / type:- (the model reads one strand)
        adata = feature_table(X, obs, scores, card=sae.card(layer=layer, model=m.name))
        fr = adata.var["firing_rate"].to_numpy()
        mx = np.asarray(X.max(0).todense()).ravel()
        scores["firing_rate"] = fr[scores["latent"].to_numpy()]
        scores["max_activation"] = mx[scores["latent"].to_numpy()]
        best = best_per_class(flat)
        el_best = flat.groupby("class")["element_auroc"].max()
        labels = best_labels(scores, min_score=0.2)
        expl = explain_variants(m, sae, layer, genome.contigs, variants, labels=labels, top=10)
        share = {f"top{t}": matching_share(expl, variants, top=t).set_index("consequence")["share"].to_dict()
                 for t in (1, 5, 10)}
        res = {"train": {k_: rep[k_] for k_ in ("final", "tokens", "seconds", "tokens_per_s", "dead_latents", "steps")},
               "eval": ev,
               "best_auroc_per_class": best["auroc"].round(4).to_dict(),
               "best_element_auroc_per_class": el_best.round(4).to_dict(),
               "best_f1_per_class": flat.groupby("class")["f1"].max().round(4).to_dict(),
               "n_classes": int(len(best)),
               "n_classes_base_auroc_gt_0.9": int((best["auroc"] > 0.9).sum()),
               "n_classes_element_auroc_gt_0.9": int((el_best > 0.9).sum()),
               "stranded_best_f1_per_class": scores.groupby("class")["f1"].max().round(4).to_dict(),
               "n_labelled_latents": int((labels["label"] != "").sum()),
               "labels_used": labels["label"].value_counts().to_dict(),
               "explanations_matching_share": share}
        if probe_baseline:
            lp = linear_probe_baseline(m, layer, genome, {train[0]: (1, 120_000)}, region, seed=seed)
            sae_f1 = scores.groupby("class")["f1"].max()
            res["linear_probe_baseline"] = {
                c: {"probe_f1": round(float(r.f1), 4), "probe_auroc": round(float(r.auroc), 4),
                    "probe_element_auroc": round(float(r.element_auroc), 4),
                    "sae_best_f1": round(float(sae_f1.get(c, np.nan)), 4)} for c, r in lp.iterrows()}
        if causal and name == "model":
            res["causal"] = {c: causal_tests(m, sae, layer, genome, scores, tc, c, seed=seed) for c in causal_classes}
        res["seconds"] = time.perf_counter() - t0
        out[name] = res
        if out_dir is not None:
            od = Path(out_dir) / name
            od.mkdir(parents=True, exist_ok=True)
            save_sae(sae, od / "sae.safetensors", layer=layer, model=m.name, train=res["train"]["final"])
            adata.write_h5ad(od / "features.h5ad")
            scores.to_parquet(od / "label_scores.parquet")
            expl.to_parquet(od / "explanations.parquet")
            variants.to_parquet(od / "variants.parquet")
    return out
