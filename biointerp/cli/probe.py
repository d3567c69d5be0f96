"""``biointerp probe``: train, apply, evaluate, show and fine-tune probes."""

from __future__ import annotations

import json
from pathlib import Path

import click

KIND_CHOICES = ["linear", "covariance", "covariance_concat", "covariance_multihead"]


@click.group(name="probe")
def probe() -> None:
    """Linear and covariance probes on harvested activations.

    Typical flow: `harvest --store S` -> `probe train --store S --labels L --out p.safetensors`
    -> `probe apply --probe p.safetensors --store S --out scores.h5ad` -> `probe evaluate`.
    """


# ------------------------------------------------------------------ helpers
def _read_table(path: str):
    """Variant table (h5ad obs, parquet, tsv, csv) indexed by variant_id (first row of a repeated id)."""
    df = _read_raw(path)
    dup = df["variant_id"].duplicated()
    if dup.any():
        click.echo(f"warning: {path}: {int(dup.sum())} repeated variant_id rows; the first of each is used "
                   f"(e.g. {df.loc[dup, 'variant_id'].iloc[0]})", err=True)
        df = df[~dup]
    return df.set_index(df["variant_id"].astype(str)).drop(columns="variant_id")


def _read_raw(path: str):
    """Variant table (h5ad obs, parquet, tsv, csv) with a variant_id column, every row kept."""
    import pandas as pd

    p = Path(path)
    if not p.exists():
        raise click.ClickException(f"{path}: file not found")
    name = p.name.lower()
    try:
        if name.endswith(".h5ad"):
            import anndata as ad

            a = ad.read_h5ad(p)
            df = a.obs.copy()
            for j, col in enumerate(a.var_names):
                if col not in df.columns:
                    df[col] = a.X[:, j]
            df.index.name = "variant_id"
            return df.reset_index()
        if name.endswith((".parquet", ".pq")):
            df = pd.read_parquet(p)
        elif name.endswith((".tsv", ".tsv.gz", ".txt")):
            df = pd.read_csv(p, sep="\t")
        elif name.endswith((".csv", ".csv.gz")):
            df = pd.read_csv(p)
        else:
            raise click.ClickException(f"{path}: unknown table format; use .h5ad, .parquet, .tsv or .csv")
    except click.ClickException:
        raise
    except Exception as err:  # noqa: BLE001
        raise click.ClickException(f"{path}: could not read table ({err})") from err
    if "variant_id" not in df.columns:
        raise click.ClickException(f"{path}: no 'variant_id' column (columns: {list(df.columns)[:12]}); "
                                   "write it with `biointerp variants check --out`")
    df["variant_id"] = df["variant_id"].astype(str)
    return df


def _open_stores(stores: tuple[str, ...]):
    from biointerp.probes.training import open_source
    from biointerp.store import StoreError

    if not stores:
        raise click.UsageError("give at least one --store DIR (an activation store from `biointerp harvest`)")
    try:
        return open_source(list(stores))
    except StoreError as err:
        raise click.ClickException(str(err)) from err


def _default_tensor(src) -> str:
    names = src.tensor_names()
    for t in ("acts", "diff"):
        if t in names:
            return t
    emb = [n for n in names if n.startswith("emb.") and not n.endswith(".ref")]
    if emb:
        return emb[0]
    raise click.ClickException(f"store has no probe input tensor (acts, diff or emb.*): {names}")


def _make_split(labels, split_column, how, test_frac, val_frac, seed):
    import numpy as np

    from biointerp.probes.splits import make_split, split_from_column

    try:
        if split_column:
            split = split_from_column(labels, split_column)
        else:
            split = make_split(labels, how, test_frac, val_frac, seed)
    except (KeyError, ValueError) as err:
        raise click.ClickException(f"split: {err}") from err
    split = split.copy()
    if not (split == "val").any() and val_frac > 0:
        # carve a validation split for early stopping out of train, by gene when possible
        tr = split.index[split == "train"]
        how_val = "gene" if "gene" in labels.columns and how != "random" else "random"
        sub = make_split(labels.loc[tr], how_val, val_frac, 0.0, seed)
        split.loc[sub.index[sub == "test"]] = "val"
        click.echo(f"no 'val' rows in the split: held out {int((split == 'val').sum())} training rows "
                   f"({how_val}) for early stopping")
    return split.astype(str).where(split.notna(), np.nan)


def _score_name(head: str) -> str:
    return head if head in ("pathogenicity",) or head.startswith("probe_") else f"probe_{head}"


def _heads_from_options(labels, label_columns, name, head_kind):
    from biointerp.probes.training import infer_head_spec

    for c in label_columns:
        if c not in labels.columns:
            raise click.ClickException(f"label column {c!r} not in the labels table (columns: "
                                       f"{list(labels.columns)[:15]}); pick one with --label-column")
    if len(label_columns) == 1:
        spec = infer_head_spec(labels[label_columns[0]], head_kind, column=label_columns[0])
        return {name: spec}
    return {c: infer_head_spec(labels[c], head_kind, column=c) for c in label_columns}


def _evaluate_test(result, src, labels, split, n_boot, batch_size, strata_column="consequence"):
    import numpy as np

    from biointerp.probes.evaluate import binary_labels, evaluate, stratified
    from biointerp.probes.training import predict

    stored = set(_stored(src))
    test_ids = [v for v in labels.index[(split == "test").to_numpy()] if v in stored]
    metrics, strata = {}, {}
    if not test_ids:
        return {}, {}, None
    pair = result.info["input"]["pair"]
    pred = predict(result.probe, src, result.info["input"]["tensor"], test_ids, result.heads, batch_size, pair=pair)
    for head, spec in result.heads.items():
        if spec.get("kind", "binary") != "binary":
            continue
        y = binary_labels(labels.loc[test_ids, spec.get("column", head)])
        metrics[head] = evaluate(y, pred[head].to_numpy(), n_boot)
        if strata_column in labels.columns:
            st = stratified(y, pred[head].to_numpy(), labels.loc[test_ids, strata_column], n_boot=min(n_boot, 200))
            strata[head] = st.replace({np.nan: None}).to_dict(orient="records")
    binary = [h for h, spec in result.heads.items() if spec.get("kind", "binary") == "binary"]
    if binary:
        h = binary[0]
        test = labels.index.isin(test_ids)
        score = pred[h].reindex(labels.index).to_numpy(dtype=float)
        cmp = _baseline_comparison(labels, result.heads[h].get("column", h), {_score_name(h): score}, test,
                                   (split == "train").to_numpy(), strata_column, n_boot, 0)
        if cmp is not None:
            strata["_comparison"] = cmp
    return metrics, strata, pred


def _stored(src):
    from biointerp.probes.training import _stored_ids

    return _stored_ids(src)


def _print_metrics(metrics: dict) -> None:
    for head, m in metrics.items():
        click.echo(f"  {head}: AUROC {m['auroc']:.3f} [{m['auroc_ci'][0]:.3f}, {m['auroc_ci'][1]:.3f}]  "
                   f"AUPRC {m['auprc']:.3f} [{m['auprc_ci'][0]:.3f}, {m['auprc_ci'][1]:.3f}]  "
                   f"n={m['n']} ({m['n_pos']} pos / {m['n_neg']} neg)")


_common_train = [
    click.option("--store", "stores", multiple=True, required=True, type=click.Path(file_okay=False),
                 help="Activation store (repeatable, e.g. one per pipeline shard)."),
    click.option("--labels", required=True, type=click.Path(dir_okay=False),
                 help="Variant table with variant_id, label column(s), and gene/chrom/consequence when known "
                      "(.parquet, .tsv, .csv or a scores .h5ad)."),
    click.option("--label-column", "label_columns", multiple=True, default=("label",), show_default=True,
                 help="Label column; repeat for a multi-head covariance probe (one head per column)."),
    click.option("--tensor", default=None, help="Store tensor to read (default: acts, diff, else the first emb.*)."),
    click.option("--split", "how", default="gene", show_default=True,
                 help="gene | chrom | random | column:<name> (ignored with --split-column)."),
    click.option("--split-column", default=None, help="Column of the labels table holding train/val/test."),
    click.option("--test-frac", type=click.FloatRange(0, 0.9), default=0.2, show_default=True),
    click.option("--val-frac", type=click.FloatRange(0, 0.9), default=0.1, show_default=True),
    click.option("--epochs", type=click.IntRange(1), default=50, show_default=True),
    click.option("--batch-size", type=click.IntRange(1), default=64, show_default=True),
    click.option("--lr", type=float, default=1e-3, show_default=True),
    click.option("--patience", type=click.IntRange(1), default=5, show_default=True),
    click.option("--seed", type=int, default=0, show_default=True),
    click.option("--n-boot", type=click.IntRange(0), default=1000, show_default=True,
                 help="Bootstrap resamples for the test-set CIs stored in the card."),
    click.option("--accelerator", default="auto", show_default=True, help="lightning accelerator: auto, cpu, gpu."),
]


def _apply_options(options):
    def deco(f):
        for o in reversed(options):
            f = o(f)
        return f
    return deco


def _card(src, result, kind, split_desc, metrics, strata, calibration, extra=None) -> dict:
    man = getattr(src, "manifest", {}) or {}
    tensor = result.info["input"]["tensor"]
    inp = result.info["input"]
    pairing, recipe = inp.get("pairing", "genomic"), inp.get("recipe")
    ref_view = "ref_same" if pairing == "index" else ("ref_aligned" if recipe == "genomic" else "ref_cross")
    card = {
        "kind": getattr(result.probe, "kind", kind),
        "model": man.get("model"),
        "layer": man.get("layer") or man.get("layers"),
        "views": ["var_same", ref_view] if tensor == "acts" else
                 [f"var_same - {ref_view} (stored diff)"] if tensor == "diff" else [tensor],
        "pooling": tensor.split(".")[-1] if tensor.startswith("emb.") else "evee",
        "recipe": recipe,
        "pairing": inp.get("pairing"),
        "input_layout": inp.get("layout"),
        "input": inp,
        "d": result.probe.d,
        "hparams": result.probe.hparams(),
        "heads": result.heads,
        "score_names": {h: _score_name(h) for h in result.heads},
        "data_fingerprint": result.info["data_fingerprint"],
        "split": split_desc,
        "training": {k: v for k, v in result.info.items() if k not in ("input", "data_fingerprint")},
        "metrics": {"test": metrics, "test_strata": {k: v for k, v in (strata or {}).items() if k != "_comparison"},
                    **({"test_vs_baselines": strata["_comparison"]} if (strata or {}).get("_comparison") else {})},
        "calibration": calibration,
        "store_manifest": man,
    }
    card.update(extra or {})
    return card


@probe.command("train")
@_apply_options(_common_train)
@click.option("--kind", type=click.Choice(KIND_CHOICES), default="linear", show_default=True)
@click.option("--name", default="pathogenicity", show_default=True,
              help="Head name (score column: 'pathogenicity' or probe_<name>).")
@click.option("--head-kind", type=click.Choice(["auto", "binary", "categorical", "continuous"]), default="auto",
              show_default=True)
@click.option("--l2", type=float, default=1e-3, show_default=True, help="Linear probe L2 (per-sample mean loss).")
@click.option("--features", type=click.Choice(["auto", "pooled", "pooled_pair", "evee_mean_diff"]), default="auto",
              show_default=True, help="Linear probe features.")
@click.option("--pairing", type=click.Choice(["genomic", "index"]), default=None,
              help="EVEE views: index = var_same - ref_same, the same sequence index (EVEE's diff; default on "
                   "evee-recipe stores); genomic = var_same - ref_aligned, the same genomic base (genomic-recipe "
                   "stores only; their default). Saved in the card with the store's recipe; apply, evaluate and "
                   "finetune use the card's and refuse a store of another recipe.")
@click.option("--h", "h", type=click.IntRange(1), default=64, show_default=True,
              help="Covariance rank h (EVEE's d_hidden).")
@click.option("--p", "p", type=click.IntRange(1), default=None,
              help="Covariance readout width p (EVEE's d_probe) [default: 256 for covariance_concat, EVEE's "
                   "unified-diff layout and trainer default; 128 otherwise].")
@click.option("--root", type=click.Choice(["newton_schulz", "sym_eigh", "gram_eigh"]), default="newton_schulz",
              show_default=True,
              help="Covariance probes: newton_schulz = EVEE's 3-step polynomial of the non-symmetric C (not a square "
                   "root); sym_eigh = true root of C's symmetric part projected onto the PSD cone; gram_eigh = true "
                   "root of the PSD pooling sum L^T L / K.")
@click.option("--calibrate", type=click.Choice(["none", "platt", "isotonic"]), default="none", show_default=True,
              help="Fit a calibration map on the validation split and store it in the card.")
@click.option("--report-dir", type=click.Path(file_okay=False), default=None,
              help="Also write split.tsv, test predictions, ROC and calibration PNGs here.")
@click.option("--strata", default="consequence", show_default=True,
              help="Column for per-stratum test metrics in the card (skipped when absent).")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Probe file (.safetensors).")
def train_cmd(stores, labels, label_columns, tensor, how, split_column, test_frac, val_frac, epochs, batch_size, lr,
              patience, seed, n_boot, accelerator, kind, name, head_kind, l2, features, pairing, h, p, root, calibrate,
              report_dir, strata, out):
    """Train a probe on store activations, evaluate it on the held-out test split, save it.

    Example: biointerp probe train --store acts/ --labels variants.parquet --kind covariance
    --split gene --out probes/covariance.safetensors
    """
    from biointerp.probes.artifact import save_probe
    from biointerp.probes.evaluate import binary_labels, fit_calibration
    from biointerp.probes.training import predict, train_probe

    if not out.endswith(".safetensors"):
        raise click.BadParameter(f"{out}: probe files end in .safetensors", param_hint="--out")
    src = _open_stores(stores)
    table = _read_table(labels)
    tensor = tensor or _default_tensor(src)
    heads = _heads_from_options(table, label_columns, name, head_kind)
    if kind in ("covariance", "covariance_concat") and len(heads) > 1:
        kind = "covariance_multihead"
    split = _make_split(table, split_column, how, test_frac, val_frac, seed)
    counts = split.value_counts().to_dict()
    click.echo(f"split ({'column ' + split_column if split_column else how}): {counts}")
    hp = {"l2": l2, "h": h, "p": p if p is not None else (256 if kind.endswith("concat") else 128), "root": root}
    if features != "auto":
        hp["features"] = features
    try:
        result = train_probe(list(stores), table, split, kind=kind, tensor=tensor, heads=heads, hparams=hp,
                             max_epochs=epochs, batch_size=batch_size, lr=lr, patience=patience, seed=seed,
                             accelerator=accelerator, pairing=pairing, progress=True)
    except (KeyError, ValueError) as err:
        raise click.ClickException(str(err)) from err
    info = result.info
    click.echo(f"trained {kind} on {info['n_train']} variants (val {info['n_val']}), method {info['method']}, "
               f"epochs {info.get('epochs')}"
               + (f", recipe {info['input'].get('recipe')}, pairing {info['input']['pairing']}, layout "
                  f"{info['input'].get('layout')}" if "pairing" in info["input"] else ""))
    if info["n_labelled_without_activations"]:
        click.echo(f"{info['n_labelled_without_activations']} labelled variants have no activations in the store "
                   "(non-ok status or not harvested): not used")
    calibration = None
    first = next(iter(result.heads))
    if calibrate != "none":
        stored = set(_stored(src))
        val_ids = [v for v in table.index[(split == "val").to_numpy()] if v in stored]
        if not val_ids:
            raise click.ClickException("--calibrate needs a validation split (--val-frac > 0)")
        pv = predict(result.probe, src, tensor, val_ids, result.heads, batch_size, pair=info["input"]["pair"])
        try:
            calibration = {first: fit_calibration(binary_labels(table.loc[val_ids, result.heads[first].get(
                "column", first)]), pv[first].to_numpy(), calibrate)}
        except ValueError as err:
            raise click.ClickException(f"calibration: {err}") from err
    metrics, strata, pred = _evaluate_test(result, src, table, split, n_boot, batch_size, strata)
    if metrics:
        click.echo("test split:")
        _print_metrics(metrics)
    else:
        click.echo("no labelled test rows in the store: the card has no test metrics")
    split_desc = {"how": f"column:{split_column}" if split_column else how, "test_frac": test_frac,
                  "val_frac": val_frac, "seed": seed, "counts": {k: int(v) for k, v in counts.items()}}
    card = _card(src, result, kind, split_desc, metrics, strata, calibration)
    save_probe(out, result.probe, card)
    click.echo(f"probe -> {out}")
    if report_dir:
        _write_report(report_dir, table, split, pred, result, metrics, calibration)
        if strata.get("_comparison"):
            _write_comparison(Path(report_dir), strata["_comparison"])


def _write_report(report_dir, table, split, pred, result, metrics, calibration):
    from biointerp.probes.evaluate import apply_calibration, binary_labels, plot_calibration, plot_roc, \
        reliability_table

    d = Path(report_dir)
    d.mkdir(parents=True, exist_ok=True)
    split.rename("split").to_frame().to_csv(d / "split.tsv", sep="\t", index_label="variant_id")
    (d / "metrics.json").write_text(json.dumps(metrics, indent=2))
    if pred is None:
        return
    pred.to_csv(d / "test_predictions.tsv", sep="\t")
    curves, rel = {}, {}
    for head, spec in result.heads.items():
        if spec.get("kind", "binary") != "binary":
            continue
        y = binary_labels(table.loc[pred.index, spec.get("column", head)])
        curves[head] = (y, pred[head].to_numpy())
        rel[head] = reliability_table(y, pred[head].to_numpy())
        if calibration and head in calibration:
            rel[head + " (calibrated)"] = reliability_table(y, apply_calibration(calibration[head], pred[head]))
    plot_roc(curves, d / "roc.png", "test split")
    plot_calibration(rel, d / "calibration.png", "test split")
    click.echo(f"report -> {d}")


@probe.command("apply")
@click.option("--probe", "probe_path", required=True, type=click.Path(dir_okay=False), help="Probe .safetensors.")
@click.option("--store", "stores", multiple=True, required=True, type=click.Path(file_okay=False),
              help="Activation store(s) holding the variants to score.")
@click.option("--scores", default=None, type=click.Path(dir_okay=False),
              help="Existing scores table (.h5ad) to add the probe scores to.")
@click.option("--variants", default=None, type=click.Path(dir_okay=False),
              help="Variant table (.parquet/.tsv) to build the scores table from (every row kept).")
@click.option("--kind", type=click.Choice(["linear", "covariance"]), default=None,
              help="Probe kind for files without a card (EVEE probe.safetensors: covariance).")
@click.option("--d-model", type=click.IntRange(1), default=None, help="Expected input width for card-less files.")
@click.option("--tensor", default=None, help="Store tensor (default: the card's, else acts/diff).")
@click.option("--name", default=None, help="Score column name for a single-head probe (default from the card).")
@click.option("--batch-size", type=click.IntRange(1), default=64, show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Output scores table (.h5ad or .parquet).")
def apply_cmd(probe_path, stores, scores, variants, kind, d_model, tensor, name, batch_size, device, out):
    """Score variants with a probe and write the scores into the AnnData scores table.

    Variants without activations (non-ok status, or not in the store) keep their row with NaN.
    Example (EVEE file): biointerp probe apply --probe probe.safetensors --kind covariance
    --d-model 4096 --store acts/ --out scores.h5ad
    """
    import numpy as np
    import pandas as pd

    from biointerp.probes.artifact import load_probe
    from biointerp.probes.evaluate import apply_calibration
    from biointerp.probes.training import predict
    from biointerp.tables import add_scores, make_scores_adata, provenance, read_scores, write_scores

    try:
        module, card = load_probe(probe_path, kind=kind, d_model=d_model, device=device)
    except (FileNotFoundError, ValueError, KeyError) as err:
        raise click.ClickException(str(err)) from err
    src = _open_stores(stores)
    inp = card.get("input", {})
    tensor = tensor or inp.get("tensor") or _default_tensor(src)
    pair = bool(inp.get("pair", False))
    if tensor not in src.tensor_names():
        raise click.ClickException(f"tensor {tensor!r} (from the probe card) is not in the store "
                                   f"(has {src.tensor_names()}); pass --tensor")
    heads = card.get("heads") or ({h: spec for h, spec in module.heads.items()} if hasattr(module, "heads")
                                  else {"pathogenicity": {"kind": "binary"}})
    names = dict(card.get("score_names") or {h: _score_name(h) for h in heads})
    if name:
        if len(heads) == 1:
            names = {next(iter(heads)): name}
        else:
            names = {h: f"{name}_{h}" for h in heads}
    if scores:
        adata = read_scores(scores)
    else:
        if variants:
            vt = _read_raw(variants)
        else:
            vt = _store_variant_table(src)
        adata = make_scores_adata(vt, uns=provenance(probe=str(probe_path)))
    stored = set(_stored(src))
    status = adata.obs["status"].astype(str) if "status" in adata.obs else pd.Series("ok", index=adata.obs_names)
    want = [v for v in adata.obs_names if v in stored and status[v] == "ok"]
    click.echo(f"scoring {len(want)} of {adata.n_obs} variants with {card.get('kind')} probe "
               f"({adata.n_obs - len(want)} without activations -> NaN)")
    try:
        pred = predict(module, src, tensor, want, heads, batch_size, device=device, pair=pair, progress=True)
    except ValueError as err:  # a damaged store (StoreError) is shown by the command group
        raise click.ClickException(f"probe and store do not fit together: {err}") from err
    cols = {}
    for h in heads:
        col = pd.Series(np.nan, index=adata.obs_names, dtype=float)
        col.loc[pred.index] = pred[h].to_numpy()
        cols[names[h]] = col.to_numpy()
        cal = (card.get("calibration") or {}).get(h)
        if cal:
            cols[names[h] + "_calibrated"] = apply_calibration(cal, col.to_numpy())
    adata = add_scores(adata, cols)
    adata.uns.setdefault("biointerp", {})
    adata.uns["biointerp"] = {**dict(adata.uns["biointerp"]),
                              f"probe_{'_'.join(names.values())}": json.dumps(
                                  {"file": str(probe_path), "kind": card.get("kind"),
                                   "data_fingerprint": card.get("data_fingerprint"), "tensor": tensor,
                                   "pairing": getattr(module, "pairing", None)})}
    write_scores(adata, out)
    click.echo(f"scores {list(cols)} -> {out}")


def _store_variant_table(src):
    import pandas as pd

    from biointerp.variants import parse_variant_id

    stores = getattr(src, "stores", [src])
    idx = pd.concat([s.index for s in stores], ignore_index=True)
    rows = []
    for vid in idx["variant_id"].astype(str):
        try:
            c, p, r, a = parse_variant_id(vid)
        except ValueError:
            c, p, r, a = "", 0, "", ""
        rows.append((c, p, r, a))
    vt = pd.DataFrame(rows, columns=["chrom", "pos", "ref", "alt"])
    vt.insert(0, "variant_id", idx["variant_id"].astype(str).to_numpy())
    vt["status"] = idx["status"].astype(str).to_numpy()
    vt["status_detail"] = idx["status_detail"].astype(str).to_numpy() if "status_detail" in idx else ""
    return vt


@probe.command("evaluate")
@click.option("--scores", default=None, type=click.Path(dir_okay=False),
              help="Scores table (.h5ad/.parquet) holding the score columns and labels.")
@click.option("--score", "score_names", multiple=True,
              help="Score column(s) to evaluate; prefix with '-' when lower means positive (e.g. -delta_ll).")
@click.option("--probe", "probe_path", default=None, type=click.Path(dir_okay=False),
              help="Or: a probe file, applied to --store variants listed in --labels.")
@click.option("--store", "stores", multiple=True, type=click.Path(file_okay=False))
@click.option("--labels", default=None, type=click.Path(dir_okay=False),
              help="Label table (default: the scores table itself).")
@click.option("--kind", type=click.Choice(["linear", "covariance"]), default=None)
@click.option("--d-model", type=click.IntRange(1), default=None)
@click.option("--label-column", default="label", show_default=True)
@click.option("--split-column", default=None, help="Restrict to rows whose split column equals --split.")
@click.option("--split", "split_value", default="test", show_default=True)
@click.option("--strata", default="consequence", show_default=True,
              help="Column for per-stratum tables (skipped when absent).")
@click.option("--n-boot", type=click.IntRange(0), default=1000, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--baselines/--no-baselines", default=True, show_default=True,
              help="Show every score beside model-free baselines (variant class, substitution type, consequence, "
                   "indel length, their logistic combination; fitted on the split column's 'train' rows, else "
                   "cross-fitted) and the zero-shot -delta_ll, per variant class and consequence.")
@click.option("--out", default=None, type=click.Path(dir_okay=False), help="Metrics JSON.")
@click.option("--out-dir", default=None, type=click.Path(file_okay=False),
              help="Also write strata.tsv, reliability.tsv, roc.png, calibration.png, comparison.md/.tsv here.")
def evaluate_cmd(scores, score_names, probe_path, stores, labels, kind, d_model, label_column, split_column,
                 split_value, strata, n_boot, seed, baselines, out, out_dir):
    """AUROC / AUPRC with bootstrap CIs, per-stratum tables, calibration and plots.

    Either a scores table and --score columns, or --probe with --store and --labels.
    Example: biointerp probe evaluate --scores s.h5ad --score pathogenicity --score -delta_ll
    --split-column split --out-dir report/
    """
    import numpy as np
    import pandas as pd

    from biointerp.probes.evaluate import (binary_labels, evaluate, plot_calibration, plot_roc, reliability_table,
                                           stratified)

    if bool(scores) == bool(probe_path):
        raise click.UsageError("give either --scores (a scores table) or --probe with --store and --labels")
    if probe_path:
        from biointerp.probes.artifact import load_probe
        from biointerp.probes.training import predict

        if not labels:
            raise click.UsageError("--probe needs --labels (variant_id + label column)")
        try:
            module, card = load_probe(probe_path, kind=kind, d_model=d_model)
        except (FileNotFoundError, ValueError) as err:
            raise click.ClickException(str(err)) from err
        src = _open_stores(stores)
        table = _read_table(labels)
        heads = card.get("heads") or {"pathogenicity": {"kind": "binary"}}
        inp = card.get("input", {})
        tensor = inp.get("tensor") or _default_tensor(src)
        stored = set(_stored(src))
        ids = [v for v in table.index if v in stored]
        from biointerp.store import StoreError

        try:  # EVEE views are paired as in training (the card's pairing, applied by load_probe)
            pred = predict(module, src, tensor, ids, heads, pair=bool(inp.get("pair", False)))
        except (ValueError, StoreError) as err:
            raise click.ClickException(f"probe and store do not fit together: {err}") from err
        head = next(h for h, s in heads.items() if s.get("kind", "binary") == "binary")
        table = table.copy()
        table[head] = pred[head].reindex(table.index)
        score_names = score_names or (head,)
    else:
        table = _read_table(scores)
        if labels:
            lab = _read_table(labels)
            for c in lab.columns:
                if c not in table.columns or table[c].isna().all() or (table[c].astype(str) == "").all():
                    table[c] = lab[c].reindex(table.index)
        if not score_names:
            raise click.UsageError("name the score column(s) with --score")
    if label_column not in table.columns:
        raise click.ClickException(f"label column {label_column!r} not found (columns: {list(table.columns)[:15]})")
    full, train_mask = table, None
    if split_column:
        if split_column not in table.columns:
            raise click.ClickException(f"split column {split_column!r} not found")
        train_mask = (table[split_column].astype(str) == "train").to_numpy()
        table = table[table[split_column].astype(str) == split_value]
    y = binary_labels(table[label_column])
    results, curves, rel, strata_tabs = {}, {}, {}, []
    for sname in score_names:
        col, sign = (sname[1:], -1.0) if sname.startswith("-") else (sname, 1.0)
        if col not in table.columns:
            raise click.ClickException(f"score column {col!r} not found (columns: {list(table.columns)[:20]})")
        s = sign * pd.to_numeric(table[col], errors="coerce").to_numpy(dtype=float)
        results[sname] = evaluate(y, s, n_boot, seed=seed)
        curves[sname] = (y, s)
        if np.nanmin(s, initial=np.inf) >= 0 and np.nanmax(s, initial=-np.inf) <= 1:
            r = reliability_table(y, s)
            rel[sname] = r
            results[sname]["ece"], results[sname]["brier"] = r.attrs["ece"], r.attrs["brier"]
        if strata and strata in table.columns:
            st = stratified(y, s, table[strata], n_boot=min(n_boot, 200), seed=seed)
            st.insert(0, "score", sname)
            strata_tabs.append(st)
    click.echo(f"{len(table)} rows" + (f" ({split_column} == {split_value})" if split_column else ""))
    _print_metrics(results)
    payload = {"metrics": results[score_names[0]], "scores": results,
               "label_column": label_column, "split": {split_column: split_value} if split_column else None}
    cmp = None
    if baselines:
        cmp = _baseline_comparison(full, label_column, {sname: _signed(table, sname) for sname in score_names},
                                   full.index.isin(table.index), train_mask, strata, n_boot, seed)
        payload["comparison"] = cmp
    payload["predictions"] = {"variant_id": table.index.astype(str).tolist(),
                              **{sname: [None if not np.isfinite(v) else float(v) for v in _signed(table, sname)]
                                 for sname in score_names}}
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(payload, indent=2, default=float))
        click.echo(f"metrics -> {out}")
    if out_dir:
        d = Path(out_dir)
        d.mkdir(parents=True, exist_ok=True)
        (d / "metrics.json").write_text(json.dumps(payload, indent=2, default=float))
        if strata_tabs:
            pd.concat(strata_tabs).to_csv(d / "strata.tsv", sep="\t", index=False)
        if rel:
            pd.concat([t.assign(score=k) for k, t in rel.items()]).to_csv(d / "reliability.tsv", sep="\t",
                                                                          index=False)
            plot_calibration(rel, d / "calibration.png")
        plot_roc(curves, d / "roc.png")
        if cmp is not None:
            _write_comparison(d, cmp)
        click.echo(f"report -> {d}")


def _signed(table, sname):
    """Score column ``sname`` of ``table`` as floats (``-name``: negated)."""
    import pandas as pd

    col, sign = (sname[1:], -1.0) if sname.startswith("-") else (sname, 1.0)
    return sign * pd.to_numeric(table[col], errors="coerce").to_numpy(dtype=float)


def _baseline_comparison(table, label_column, scores, eval_mask, train_mask, strata, n_boot, seed):
    """compare_scores of ``scores`` (on the eval rows) beside the baselines; printed as a table."""
    import numpy as np

    from biointerp.probes.baselines import with_baselines
    from biointerp.probes.evaluate import binary_labels, comparison_tables

    full = {}
    for k, v in scores.items():  # one value per table row, or per evaluated row
        full[k] = np.asarray(v, float) if len(v) == len(table) else np.full(len(table), np.nan)
        if len(v) != len(table):
            full[k][np.asarray(eval_mask, bool)] = v
    try:
        cmp = with_baselines(table, binary_labels(table[label_column]), full, eval_mask, train_mask,
                             strata_column=strata, n_boot=n_boot, seed=seed)
    except ValueError as err:
        click.echo(f"baselines skipped: {err}", err=True)
        return None
    head = comparison_tables(cmp)["headline"]
    if len(head):
        click.echo(f"beside the model-free baselines ({cmp['baselines_fitted']}):")
        click.echo(head.to_string(index=False))
    return cmp


def _write_comparison(d, cmp):
    from biointerp.probes.evaluate import comparison_markdown, comparison_tables

    (d / "comparison.md").write_text("# Scores beside their baselines\n\n"
                                     + comparison_markdown(cmp, cmp.get("baselines_fitted", "")))
    comparison_tables(cmp)["long"].to_csv(d / "comparison.tsv", sep="\t", index=False)


@probe.command("show")
@click.argument("probe_path", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the whole card as JSON.")
def show_cmd(probe_path, as_json):
    """Print a probe's card and tensor shapes (after checking the tensors against the card)."""
    from safetensors.torch import load_file

    from biointerp.probes.artifact import ProbeFileError, check_tensors, read_card

    if not Path(probe_path).exists():
        raise click.ClickException(f"{probe_path}: file not found")
    try:
        card = read_card(probe_path)
        try:
            sd = load_file(probe_path)
        except Exception as err:  # noqa: BLE001 - safetensors raises its own error types
            raise ProbeFileError(f"{probe_path}: tensors cannot be read ({err})") from err
        check_tensors(probe_path, sd, card)
    except ProbeFileError as err:
        raise click.ClickException(str(err)) from err
    shapes = {k: list(v.shape) for k, v in sd.items()}
    if as_json:
        click.echo(json.dumps({"card": card, "tensors": shapes}, indent=2, default=str))
        return
    if card is None:
        click.echo(f"{probe_path}: no biointerp card (load with --kind covariance --d-model N for EVEE files)")
    else:
        for k in ("kind", "model", "layer", "views", "pooling", "d", "hparams", "heads", "data_fingerprint", "split",
                  "calibration"):
            if card.get(k) is not None:
                click.echo(f"{k:>16}: {json.dumps(card[k], default=str)}")
        for head, m in (card.get("metrics", {}).get("test") or {}).items():
            click.echo(f"{'test ' + head:>16}: AUROC {m['auroc']:.3f} {m['auroc_ci']}, AUPRC {m['auprc']:.3f}, n={m['n']}")
    click.echo("tensors:")
    for k, s in shapes.items():
        click.echo(f"  {k}: {s}")


@probe.command("finetune")
@_apply_options(_common_train)
@click.option("--probe", "probe_path", required=True, type=click.Path(dir_okay=False), help="Probe to start from.")
@click.option("--kind", type=click.Choice(["linear", "covariance"]), default=None,
              help="For card-less (EVEE) files.")
@click.option("--add-head", default=None,
              help="Add a new readout head with this name (covariance probes) instead of continuing the old one.")
@click.option("--head-kind", type=click.Choice(["auto", "binary", "categorical", "continuous"]), default="auto")
@click.option("--freeze-backbone/--train-backbone", default=True, show_default=True,
              help="With --add-head: keep the shared covariance projections fixed.")
@click.option("--out", required=True, type=click.Path(dir_okay=False))
def finetune_cmd(stores, labels, label_columns, tensor, how, split_column, test_frac, val_frac, epochs, batch_size,
                 lr, patience, seed, n_boot, accelerator, probe_path, kind, add_head, head_kind, freeze_backbone,
                 out):
    """Fine-tune a probe on new labels: continue training it, or add a head.

    Example: biointerp probe finetune --probe covariance.safetensors --store cohort/ --labels cohort.tsv
    --label-column outcome --add-head outcome --out covariance_outcome.safetensors
    """
    from biointerp.probes.artifact import load_probe, save_probe
    from biointerp.probes.covariance import CovarianceBackbone, to_multihead
    from biointerp.probes.training import infer_head_spec, train_probe

    try:
        module, card = load_probe(probe_path, kind=kind)
    except (FileNotFoundError, ValueError) as err:
        raise click.ClickException(str(err)) from err
    src = _open_stores(stores)
    table = _read_table(labels)
    inp = card.get("input", {})
    tensor = tensor or inp.get("tensor") or _default_tensor(src)
    heads = dict(card.get("heads") or {"pathogenicity": {"kind": "binary", "column": "label"}})
    col = label_columns[0]
    if col not in table.columns:
        raise click.ClickException(f"label column {col!r} not in {labels}")
    trainable = "all"
    if add_head:
        if not isinstance(module, CovarianceBackbone):
            raise click.ClickException("--add-head needs a covariance probe; continue a linear probe without it")
        module = to_multihead(module, next(iter(heads)), heads[next(iter(heads))])
        module.add_head(add_head, infer_head_spec(table[col], head_kind, column=col))
        heads = dict(module.heads)
        trainable = "heads" if freeze_backbone else "all"
    else:
        first = next(iter(heads))
        heads = {first: {**heads[first], "column": col}}
    for h, spec in heads.items():
        c = spec.get("column", h)
        if c not in table.columns:
            table[c] = float("nan")  # old heads without labels here get no loss
    split = _make_split(table, split_column, how, test_frac, val_frac, seed)
    try:
        result = train_probe(list(stores), table, split, tensor=tensor, heads=heads, probe=module,
                             max_epochs=epochs, batch_size=batch_size, lr=lr, patience=patience, seed=seed,
                             accelerator=accelerator, trainable=trainable, pair=bool(inp.get("pair", False)),
                             method="minibatch", progress=True)
    except (KeyError, ValueError) as err:
        raise click.ClickException(str(err)) from err
    metrics, strata, _ = _evaluate_test(result, src, table, split, n_boot, batch_size)
    _print_metrics(metrics)
    split_desc = {"how": f"column:{split_column}" if split_column else how, "seed": seed,
                  "counts": {k: int(v) for k, v in split.value_counts().items()}}
    new = _card(src, result, card.get("kind"), split_desc, metrics, strata, card.get("calibration"),
                {"finetuned_from": {"file": str(probe_path), "data_fingerprint": card.get("data_fingerprint"),
                                    "metrics": card.get("metrics")}})
    save_probe(out, result.probe, new)
    click.echo(f"fine-tuned probe -> {out}")
