"""``biointerp features``: train, encode, label, explain, dashboard and intervene with sparse autoencoders;
``biointerp explain``: show one variant's explanation."""

from __future__ import annotations

import json
import re
from pathlib import Path

import click

from biointerp.cli.score import resolve_device

_REGION = re.compile(r"^(?P<chrom>[^:]+)(?::(?P<a>[0-9,]+)-(?P<b>[0-9,]+))?$")


def _load_model(spec: str, device: str = "auto", dtype: str = "auto"):
    from biointerp.models import load_model

    dev, dt = resolve_device(device, dtype)
    try:
        return load_model(spec, device=dev, dtype=dt)
    except Exception as err:  # noqa: BLE001 - any loading failure is a user-facing error
        raise click.ClickException(f"--model {spec}: {err}") from err


def _load_sae(path: str):
    from biointerp.features.sae import SAEError, load_sae

    try:
        return load_sae(path)
    except SAEError as err:
        raise click.ClickException(str(err)) from err


def _genome(fasta: str):
    from biointerp.genome import Genome, GenomeError

    try:
        return Genome(fasta)
    except GenomeError as err:
        raise click.ClickException(f"--fasta {fasta}: {err}") from err


def _regions(genome, specs: tuple[str, ...]) -> dict[str, tuple[int, int]]:
    """``chrom`` or ``chrom:start-end`` (1-based inclusive) -> {chrom: (start, end)}; all contigs if none."""
    if not specs:
        return {c: genome.bounds(c) for c in genome.contigs}
    out = {}
    for s in specs:
        m = _REGION.match(s.strip())
        if not m:
            raise click.UsageError(f"--region {s!r}: use chrom or chrom:start-end (1-based)")
        chrom = genome.resolve_contig(m["chrom"])
        if chrom is None:
            raise click.UsageError(f"--region {s!r}: contig {m['chrom']!r} is not in the reference "
                                   f"(it has {', '.join(genome.contigs[:5])}...)")
        lo, hi = genome.bounds(chrom)
        a = int(m["a"].replace(",", "")) if m["a"] else lo
        b = int(m["b"].replace(",", "")) if m["b"] else hi
        if not lo <= a <= b <= hi:
            raise click.UsageError(f"--region {s!r} lies outside {chrom}:{lo}-{hi}")
        out[chrom] = (a, b)
    return out


def _layer(model, sae, layer: str | None) -> str:
    layer = layer or (getattr(sae, "card_extra", {}) or {}).get("layer")
    if not layer:
        raise click.UsageError("the SAE card names no layer; pass --layer")
    if layer not in model.layer_names:
        raise click.UsageError(f"--layer {layer!r} is not a layer of {model.name} (e.g. {model.layer_names[1:4]})")
    return layer


def _contig_seqs(genome, regions: dict[str, tuple[int, int]]) -> dict[str, str]:
    return {c: genome.fetch(c, a, b) for c, (a, b) in regions.items()}


@click.group("features")
def features() -> None:
    """Sparse autoencoders on model activations: train, encode, label, explain, dashboard, intervene.

    Typical flow: `features train` -> `features encode` -> `features label --annotations genes.gff3`
    -> `features dashboard` / `features explain` -> `biointerp explain VARIANT_ID`."""


@features.command("train")
@click.option("--model", "model_spec", required=True, help="Model spec: demo, evo2_7b, a model directory, hf:<dir>.")
@click.option("--layer", required=True, help="Layer whose output the SAE reads (e.g. blocks.4).")
@click.option("--fasta", type=click.Path(exists=True, dir_okay=False), help="Genome to stream activations from.")
@click.option("--region", "regions", multiple=True, help="chrom or chrom:start-end to train on (repeatable; default all).")
@click.option("--store", "store_dir", type=click.Path(exists=True, file_okay=False),
              help="Stream from an activation store instead of running the model over --fasta.")
@click.option("--tensor", default=None, help="Store tensor to read (default: the first float tensor).")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Output SAE (.safetensors; card beside as .json).")
@click.option("--latents", type=click.IntRange(1), default=512, show_default=True, help="Number of latents (d_hidden).")
@click.option("-k", "--k", "k", type=click.IntRange(1), default=16, show_default=True, help="Active latents per token.")
@click.option("--kind", type=click.Choice(["batch_topk", "topk"]), default="batch_topk", show_default=True)
@click.option("--untied", is_flag=True, help="Separate decoder weights (default: tied, as the Evo 2 SAE).")
@click.option("--steps", type=click.IntRange(1), default=1000, show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=1024, show_default=True, help="Tokens per step.")
@click.option("--lr", type=float, default=1e-3, show_default=True)
@click.option("--window", type=click.IntRange(16), default=512, show_default=True, help="Window length over the genome.")
@click.option("--buffer-tokens", type=click.IntRange(1), default=65536, show_default=True,
              help="Shuffle buffer size (bounds memory).")
@click.option("--engine", type=click.Choice(["lightning", "plain"]), default="lightning", show_default=True,
              help="lightning Trainer, or the same objective in a bare loop (faster start-up for small runs).")
@click.option("--standardize", is_flag=True, help="Scale each input dimension to unit variance (per-dimension input scale).")
@click.option("--enrich-annotations", type=click.Path(exists=True, dir_okay=False),
              help="GFF3/GTF/BED/GenBank: mix rows at these elements into every batch (with --fasta).")
@click.option("--enrich-class", "enrich_classes", multiple=True,
              help="Annotation type(s) to enrich (repeatable), e.g. five_prime_cis_splice_site.")
@click.option("--enrich-fraction", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.25,
              show_default=True, help="Share of each batch drawn from the enriched elements.")
@click.option("--enrich-rows", type=click.IntRange(1), default=16384, show_default=True,
              help="Element rows computed once and drawn from (memory: rows x d floats).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True)
def train(model_spec, layer, fasta, regions, store_dir, tensor, out, latents, k, kind, untied, steps, batch_size, lr,
          window, buffer_tokens, engine, standardize, enrich_annotations, enrich_classes, enrich_fraction, enrich_rows,
          seed, device) -> None:
    """Train an SAE (lightning) on activations streamed from a genome or an activation store.

    Short, rare elements (splice sites, start codons, motifs) are a tiny share of random windows;
    --enrich-annotations with --enrich-class mixes rows at those elements into every batch.

    Example: biointerp features train --model demo --fasta genome.fa --layer blocks.4 --out sae.safetensors"""
    from biointerp.features.sae import save_sae
    from biointerp.features.train import ModelActivations, MixedRows, StoreActivations, element_rows, evaluate_sae, train_sae

    if (fasta is None) == (store_dir is None):
        raise click.UsageError("give exactly one activation source: --fasta (with --model) or --store")
    if bool(enrich_annotations) != bool(enrich_classes):
        raise click.UsageError("--enrich-annotations and --enrich-class go together")
    if enrich_annotations and not fasta:
        raise click.UsageError("--enrich-annotations needs --fasta (the elements' rows come from the model)")
    model = _load_model(model_spec, device)
    if layer not in model.layer_names:
        raise click.UsageError(f"--layer {layer!r} is not a layer of {model.name} (e.g. {model.layer_names[1:4]})")
    if store_dir:
        try:
            src = StoreActivations(store_dir, tensor, batch_size, buffer_tokens, seed=seed)
        except Exception as err:  # noqa: BLE001
            raise click.ClickException(str(err)) from err
        d_in, seqs = src.d or model.d_model, None
    else:
        genome = _genome(fasta)
        reg = _regions(genome, regions)
        seqs = _contig_seqs(genome, reg)
        src = ModelActivations(model, seqs, layer, window=window, batch_size=batch_size, buffer_tokens=buffer_tokens,
                               seed=seed)
        d_in = model.d_model
        if enrich_annotations:
            from biointerp.features.label import read_annotations

            try:
                ann = read_annotations(enrich_annotations)
            except ValueError as err:
                raise click.ClickException(str(err)) from err
            parts = []  # elements inside the training regions, in region coordinates
            for c, (a, b) in reg.items():
                sub = ann[(ann["chrom"] == c) & (ann["start"] >= a) & (ann["end"] <= b)].copy()
                sub["start"], sub["end"] = sub["start"] - (a - 1), sub["end"] - (a - 1)
                parts.append(sub)
            unknown = sorted(set(enrich_classes) - set(ann["type"]))
            if unknown:
                raise click.UsageError(f"--enrich-class {unknown} not in {enrich_annotations} "
                                       f"(types: {', '.join(sorted(set(ann['type']))[:12])}, ...)")
            import pandas as pd

            extra = element_rows(model, seqs, pd.concat(parts) if parts else ann.iloc[:0], enrich_classes, layer,
                                 enrich_rows, seed=seed)
            if not len(extra):
                raise click.ClickException("no element of the --enrich-class types lies in the training regions")
            click.echo(f"enrich: {len(extra)} rows at {', '.join(enrich_classes)}; "
                       f"{enrich_fraction:.0%} of each batch", err=True)
            src = MixedRows(src, extra, enrich_fraction, seed=seed)
    if not 0 < k <= latents:
        raise click.UsageError(f"-k ({k}) must lie in [1, --latents={latents}]")
    try:
        sae, rep = train_sae(src, d_in, latents, k, kind, not untied, steps, lr, seed=seed, engine=engine,
                             device=str(model.device), standardize=standardize, progress=True)
    except ValueError as err:
        raise click.ClickException(str(err)) from err
    ev = {}
    if seqs is not None:
        first = next(iter(seqs.values()))
        evs = [first[i:i + window] for i in range(0, min(len(first) - window, 8 * window), window)]
        ev = evaluate_sae(model, sae, layer, evs) if evs else {}
    path = save_sae(sae, out, layer=layer, model=model.name, source=store_dir or fasta,
                    train={k_: rep[k_] for k_ in ("final", "tokens", "seconds", "tokens_per_s", "dead_latents")},
                    eval=ev)
    click.echo(json.dumps({"out": str(path), **rep["final"], "dead_latents": rep["dead_latents"],
                           "tokens_per_s": round(rep["tokens_per_s"]), **{f"eval_{k_}": v for k_, v in ev.items()}},
                          default=float, indent=1))


@features.command("encode")
@click.option("--model", "model_spec", required=True)
@click.option("--sae", "sae_path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--fasta", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--region", "regions", multiple=True, help="chrom or chrom:start-end (repeatable; default all contigs).")
@click.option("--layer", default=None, help="Default: the layer in the SAE card.")
@click.option("--window", type=click.IntRange(16), default=512, show_default=True)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Feature table (.h5ad).")
@click.option("--device", default="auto", show_default=True)
def encode(model_spec, sae_path, fasta, regions, layer, window, out, device) -> None:
    """Encode genome positions into a features AnnData (sparse X: positions x latents)."""
    from biointerp.features.label import encode_genome, feature_table

    model, sae, genome = _load_model(model_spec, device), _load_sae(sae_path), _genome(fasta)
    layer = _layer(model, sae, layer)
    reg = _regions(genome, regions)
    seqs = {c: genome.fetch(c, 1, b) for c, (a, b) in reg.items()}
    X, obs = encode_genome(model, sae, seqs, layer, window=window, regions=reg, progress=True)
    ad = feature_table(X, obs, card=sae.card(**getattr(sae, "card_extra", {})))
    ad.uns["fasta"] = str(fasta)
    ad.write_h5ad(out)
    click.echo(f"wrote {out}: {ad.n_obs} positions x {ad.n_vars} latents, {X.nnz} nonzero")


@features.command("label")
@click.option("--features", "features_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Feature table from `features encode`.")
@click.option("--annotations", required=True, type=click.Path(exists=True, dir_okay=False),
              help="GFF3, GTF, BED or GenBank.")
@click.option("--stranded", is_flag=True, help="Separate classes per strand (type:+ / type:-).")
@click.option("--min-count", type=click.IntRange(1), default=10, show_default=True, help="Smallest class size.")
@click.option("--by", type=click.Choice(["f1", "auroc", "element_auroc"]), default="f1", show_default=True,
              help="Score that picks each latent's label (f1: position precision x element recall).")
@click.option("--min-score", type=float, default=0.2, show_default=True, help="Below this a latent stays unlabelled.")
@click.option("--top-n", type=click.IntRange(1), default=100, show_default=True, help="Positions for precision at top.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Labelled feature table (.h5ad).")
@click.option("--scores", default=None, type=click.Path(dir_okay=False), help="Also write every latent x class score (.parquet).")
def label(features_path, annotations, stranded, min_count, by, min_score, top_n, out, scores) -> None:
    """Score every latent against annotation classes (AUROC at base and element level, precision at top)."""
    import anndata as ad

    from biointerp.features.label import annotation_classes, best_per_class, feature_table, label_latents, read_annotations

    table = ad.read_h5ad(features_path)
    try:
        ann = read_annotations(annotations)
    except (ValueError, FileNotFoundError) as err:
        raise click.ClickException(str(err)) from err
    span = table.obs.groupby("chrom", observed=True)["pos"].agg(["min", "max"])
    ann = ann[ann["chrom"].isin(set(span.index))]
    lo, hi = ann["chrom"].map(span["min"]).astype(int), ann["chrom"].map(span["max"]).astype(int)
    ann = ann[(ann["end"] >= lo) & (ann["start"] <= hi)]  # elements overlapping the encoded positions
    classes = annotation_classes(ann, min_count, stranded)
    if not classes:
        where = ", ".join(f"{c}:{int(r['min'])}-{int(r['max'])}" for c, r in span.iterrows())
        raise click.ClickException(f"{annotations}: no annotation class with >= {min_count} elements in the "
                                   f"encoded regions ({where}); encode a larger region or lower --min-count")
    sc = label_latents(table.X, table.obs, ann, classes, stranded, top_n)
    mx = __import__("numpy").asarray(table.X.max(0).todense()).ravel()
    sc["max_activation"] = mx[sc["latent"].to_numpy()]
    new = feature_table(table.X, table.obs, sc, card=dict(table.uns.get("sae", {})), min_score=min_score, by=by)
    new.uns["fasta"] = table.uns.get("fasta", "")
    new.uns["annotations"] = str(annotations)
    new.write_h5ad(out)
    if scores:
        sc.to_parquet(scores)
    best = best_per_class(sc, by)
    click.echo(best[["latent", "auroc", "element_auroc", "f1", "precision_top"]].round(3).to_string())
    click.echo(f"wrote {out}: {int((new.var['label'] != '').sum())} of {new.n_vars} latents labelled "
               f"({by} >= {min_score})")


@features.command("dashboard")
@click.option("--features", "features_path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--fasta", default=None, type=click.Path(exists=True, dir_okay=False),
              help="Reference (default: the one recorded in the table).")
@click.option("--annotations", default=None, type=click.Path(exists=True, dir_okay=False))
@click.option("--latent", "latents", multiple=True, type=int, help="Latent ids (default: the --top best labelled).")
@click.option("--top", type=click.IntRange(1), default=12, show_default=True)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output directory (index.html + PNGs).")
def dashboard(features_path, fasta, annotations, latents, top, out) -> None:
    """Static HTML + PNG dashboard of latents' top-activating contexts with the annotation drawn under them."""
    import anndata as ad

    from biointerp.features.dashboard import write_dashboard
    from biointerp.features.label import read_annotations

    table = ad.read_h5ad(features_path)
    fasta = fasta or table.uns.get("fasta")
    if not fasta or not Path(fasta).exists():
        raise click.UsageError("pass --fasta (the table records no readable reference)")
    ann_path = annotations or table.uns.get("annotations")
    ann = read_annotations(ann_path) if ann_path and Path(ann_path).exists() else None
    if latents:
        bad = [j for j in latents if not 0 <= j < table.n_vars]
        if bad:
            raise click.UsageError(f"--latent {bad[0]} is out of range [0, {table.n_vars})")
        pick = list(latents)
    else:
        v = table.var.reset_index(drop=True)
        v = v[v["firing_rate"] > 0].sort_values("label_score", ascending=False, na_position="last")
        pick = v.index[:top].tolist()
    idx = write_dashboard(table.X, table.obs, table.var, _genome(fasta), ann, out, pick)
    click.echo(f"wrote {idx} ({len(pick)} latents)")


@features.command("explain")
@click.option("--model", "model_spec", required=True)
@click.option("--sae", "sae_path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--fasta", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--variants", "variants_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="VCF, TSV/CSV or the Parquet table of `biointerp variants check`.")
@click.option("--labels", "labels_path", default=None, type=click.Path(exists=True, dir_okay=False),
              help="Labelled feature table from `features label` (adds labels to latents).")
@click.option("--layer", default=None)
@click.option("--top", type=click.IntRange(1), default=10, show_default=True)
@click.option("--rank-by", type=click.Choice(["z", "delta"]), default="z", show_default=True)
@click.option("--window", type=click.IntRange(16), default=256, show_default=True)
@click.option("--offset", type=click.IntRange(0), default=192, show_default=True, help="Bases before the variant.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Side table (.parquet), joined on variant_id.")
@click.option("--device", default="auto", show_default=True)
def explain_cmd(model_spec, sae_path, fasta, variants_path, labels_path, layer, top, rank_by, window, offset, out,
                device) -> None:
    """Per-variant explanations: the latents whose activation changes most between ref and alt."""
    import anndata as ad
    import pandas as pd

    from biointerp.features.explain import explain_variants
    from biointerp.variants import VariantInputError, read_variants

    if offset >= window:
        raise click.UsageError(f"--offset ({offset}) must be smaller than --window ({window})")
    model, sae, genome = _load_model(model_spec, device), _load_sae(sae_path), _genome(fasta)
    layer = _layer(model, sae, layer)
    try:
        table = read_variants(variants_path, genome, progress=False)
    except (VariantInputError, OSError) as err:
        raise click.ClickException(f"--variants {variants_path}: {err}") from err
    labels = None
    if labels_path:
        var = ad.read_h5ad(labels_path, backed="r").var
        labels = pd.DataFrame({"label": var["label"].to_numpy(), "score": var["label_score"].to_numpy()})
    ok = table["status"] == "ok" if "status" in table.columns else pd.Series(True, index=table.index)
    e = explain_variants(model, sae, layer, genome, table[ok], labels, top, rank_by, window, offset, progress=True)
    rest = table[~ok]
    if len(rest):
        e = pd.concat([e, pd.DataFrame({"variant_id": rest["variant_id"].astype(str), "rank": 0, "latent": -1,
                                        "delta": float("nan"), "z": float("nan"), "position": -1, "label": "",
                                        "label_score": float("nan"), "status": rest["status"].astype(str)})],
                      ignore_index=True)
    e.to_parquet(out)
    click.echo(f"wrote {out}: {e['variant_id'].nunique()} variants, {int((e['status'] == 'ok').sum())} rows explained")


@features.command("intervene")
@click.option("--model", "model_spec", required=True)
@click.option("--sae", "sae_path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--fasta", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--region", required=True, help="chrom:start-end of the sequence to run (1-based, <= a few kb).")
@click.option("--latent", required=True, type=int)
@click.option("--mode", type=click.Choice(["ablate", "clamp", "steer"]), default="ablate", show_default=True)
@click.option("--value", type=float, default=0.0, show_default=True, help="Clamp value or steering strength.")
@click.option("--layer", default=None)
@click.option("--generate", "n_generate", type=click.IntRange(0), default=0, show_default=True,
              help="Also sample this many bases after the region, with and without the edit.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", default=None, type=click.Path(dir_okay=False), help="Per-base table (.tsv) of log-likelihoods.")
def intervene(model_spec, sae_path, fasta, region, latent, mode, value, layer, n_generate, seed, out) -> None:
    """Edit one latent in the forward pass (SAE error term kept) and report the effect on per-base
    log-likelihoods and, with --generate, on sampled continuations."""
    import numpy as np
    import pandas as pd

    from biointerp.features.intervene import generate, latent_edit, log_probs_with

    model, sae, genome = _load_model(model_spec), _load_sae(sae_path), _genome(fasta)
    layer = _layer(model, sae, layer)
    (chrom, (a, b)), = _regions(genome, (region,)).items()
    if not 0 <= latent < sae.d_hidden:
        raise click.UsageError(f"--latent {latent} is out of range [0, {sae.d_hidden})")
    seq = genome.fetch(chrom, a, b)
    fn = latent_edit(sae, latent, mode, value)
    clean = log_probs_with(model, [seq])[0]
    edited = log_probs_with(model, [seq], layer, fn)[0]
    d = edited - clean
    click.echo(f"{chrom}:{a}-{b} latent {latent} {mode} {value:g}: mean dLL {np.mean(d):+.4f}, "
               f"mean |dLL| {np.mean(np.abs(d)):.4f}, max |dLL| {np.max(np.abs(d)):.4f} at "
               f"{chrom}:{a + 1 + int(np.argmax(np.abs(d)))}")
    if out:
        pd.DataFrame({"chrom": chrom, "pos": np.arange(a + 1, b + 1), "base": list(seq[1:]), "ll_clean": clean,
                      "ll_edited": edited, "delta": d}).to_csv(out, sep="\t", index=False)
        click.echo(f"wrote {out}")
    if n_generate:
        base = generate(model, [seq], n_generate, seed=seed)[0]
        ed = generate(model, [seq], n_generate, layer, fn, seed=seed)[0]
        click.echo(f"clean : {base}\nedited: {ed}")


@click.command("explain")
@click.argument("variant_id")
@click.option("--explanations", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Side table from `biointerp features explain`.")
@click.option("--png", default=None, type=click.Path(dir_okay=False), help="Also draw the explanation as a PNG.")
def explain(variant_id, explanations, png) -> None:
    """Show which SAE latents explain one variant (text, and a PNG with --png).

    Example: biointerp explain synth4:1234:G:A --explanations explanations.parquet --png v.png"""
    import pandas as pd

    from biointerp.features.explain import format_explanation, plot_explanation

    e = pd.read_parquet(explanations)
    vid = variant_id.replace("-", ":") if variant_id not in set(e["variant_id"]) else variant_id
    if vid not in set(e["variant_id"]):
        raise click.ClickException(f"{variant_id} is not in {explanations} ({e['variant_id'].nunique()} variants; "
                                   f"e.g. {e['variant_id'].iat[0] if len(e) else '-'})")
    click.echo(format_explanation(e, vid))
    if png:
        plot_explanation(e, vid, png)
        click.echo(f"wrote {png}")
