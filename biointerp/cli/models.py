"""``biointerp models``: list, inspect and run models."""

from __future__ import annotations

import json
from pathlib import Path

import click

DTYPES = ("fp32", "bf16", "fp16")


def _load(spec: str, device: str, dtype: str, checkpoint: str | None, config: str | None):
    from biointerp.models import CheckpointError, load_model

    kw = {}
    if checkpoint:
        kw["checkpoint"] = checkpoint
    if config:
        kw["config"] = config
    try:
        return load_model(spec, device=device, dtype=dtype, **kw)
    except (CheckpointError, KeyError, ValueError, ImportError) as err:
        raise click.ClickException(f"cannot load model {spec!r}: {err}") from err


def _model_options(f):
    f = click.option("--config", type=click.Path(exists=True, dir_okay=False),
                     help="Official YAML to use instead of the registry config.")(f)
    f = click.option("--checkpoint", type=click.Path(exists=False),
                     help="Local checkpoint (.pt, .pt.part0 shards merged, .safetensors or dir) for registry names.")(f)
    f = click.option("--dtype", type=click.Choice(DTYPES), default="fp32", show_default=True)(f)
    f = click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:1, mps …")(f)
    return f


@click.group()
def models() -> None:
    """List, inspect and run genomic language models (native Evo 2, Hugging Face, demo)."""


@models.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_models(as_json: bool) -> None:
    """Registered model names and whether their files are available locally."""
    from biointerp.models import DEMO_DIR, REGISTRY
    from biointerp.models import _checkpoint_candidates as candidates

    rows = [{"name": "demo", "available": DEMO_DIR.is_dir(), "where": str(DEMO_DIR),
             "note": "bundled demo StripedHyena"}]
    for name, entry in REGISTRY.items():
        found = [str(p) for p in candidates(name) if p.exists() or Path(f"{p}.part0").exists()]
        rows.append({"name": name, "available": bool(found),
                     "where": found[0] if found else f"needs --checkpoint ({entry['file']} from "
                                                      f"huggingface.co/{entry['hf']})",
                     "note": entry["note"]})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        click.echo(f"{r['name']:<15} {'yes' if r['available'] else 'no ':<4} {r['note']}\n"
                   f"{'':<20}{r['where']}")
    click.echo("Other specs: a model directory (config.yml + weights), hf:<dir>, evo2-official:<name>.")


@models.command("info")
@click.argument("spec")
@_model_options
@click.option("--layers/--no-layers", default=False, help="Print every hookable layer name.")
def info(spec: str, device: str, dtype: str, checkpoint: str | None, config: str | None,
         layers: bool) -> None:
    """Architecture, size and layer names of SPEC (e.g. demo, evo2_7b, hf:DIR, a directory)."""
    m = _load(spec, device, dtype, checkpoint, config)
    n = sum(p.numel() for p in m.module.parameters())
    out = {"name": m.name, "kind": m.kind, "d_model": m.d_model, "vocab_size": m.vocab_size,
           "parameters": n, "device": str(m.device), "dtype": str(m.dtype).replace("torch.", ""),
           "prefix_reuse": m.supports_prefix_reuse, "n_layer_names": len(m.layer_names)}
    if hasattr(m, "config"):
        kinds = m.config.layer_kinds()
        out["blocks"] = "".join({"hcs": "S", "hcm": "M", "hcl": "L", "attn": "A"}[k] for k in kinds)
    if getattr(m, "card", None):
        out["card"] = m.card
    if layers:
        out["layer_names"] = m.layer_names
    click.echo(json.dumps(out, indent=2, default=str))


def _read_sequences(sequence: tuple[str, ...], sequences_file: str | None) -> list[tuple[str, str]]:
    seqs = [(f"seq{i}", s) for i, s in enumerate(sequence)]
    if sequences_file:
        text = Path(sequences_file).read_text().splitlines()
        name, buf = None, []
        for line in text:
            line = line.strip()
            if not line:
                continue
            if line.startswith(">"):
                if name is not None:
                    seqs.append((name, "".join(buf)))
                name, buf = line[1:].split()[0], []
            elif name is None:
                seqs.append((f"line{len(seqs)}", line))
            else:
                buf.append(line)
        if name is not None:
            seqs.append((name, "".join(buf)))
    if not seqs:
        raise click.UsageError("give sequences with --sequence ACGT… or --sequences-file FILE "
                               "(FASTA or one sequence per line)")
    bad = [n for n, s in seqs if not s or set(s.upper()) - set("ACGTN")]
    if bad:
        raise click.UsageError(f"sequence(s) {bad[:5]} are empty or contain letters other than ACGTN")
    return seqs


@models.command("forward")
@click.argument("spec")
@_model_options
@click.option("--sequence", "-s", multiple=True, help="A DNA sequence (repeatable).")
@click.option("--sequences-file", type=click.Path(exists=True, dir_okay=False),
              help="FASTA or plain file with one sequence per line.")
@click.option("--layer", "-l", "layers", multiple=True, help="Layer to capture (e.g. blocks.3, norm).")
@click.option("--out", type=click.Path(dir_okay=False),
              help="Write logits and activations to this .safetensors file.")
@click.option("--batch-size", default=1, show_default=True, type=click.IntRange(1))
def forward(spec: str, device: str, dtype: str, checkpoint: str | None, config: str | None,
            sequence: tuple[str, ...], sequences_file: str | None, layers: tuple[str, ...],
            out: str | None, batch_size: int) -> None:
    """Run SPEC on sequences: print the mean log-likelihood per sequence; optionally save
    logits and activations (per sequence, unpadded) to a safetensors file."""
    from safetensors.torch import save_file
    from tqdm.auto import tqdm

    seqs = _read_sequences(sequence, sequences_file)
    m = _load(spec, device, dtype, checkpoint, config)
    unknown = [layer for layer in layers if layer not in set(m.layer_names)]
    if unknown:
        raise click.UsageError(f"unknown layer(s) {unknown}; see `biointerp models info {spec} --layers`")
    tensors = {}
    rows = []
    for i in tqdm(range(0, len(seqs), batch_size), desc="forward", unit="batch", disable=len(seqs) < 2):
        chunk = seqs[i:i + batch_size]
        ids, mask = m.tokenize([s for _, s in chunk])
        res = m.forward(ids, mask, layers=layers)
        lp = m.log_probs(ids, mask) if m.kind == "causal" else None
        for j, (name, s) in enumerate(chunk):
            n = int(mask[j].sum())
            mean_ll = float(lp[j, : n - 1].mean()) if lp is not None and n > 1 else float("nan")
            rows.append((name, n, mean_ll))
            if out:
                tensors[f"{name}/logits"] = res.logits[j, :n].float().cpu().contiguous()
                for layer, act in res.activations.items():
                    tensors[f"{name}/{layer}"] = act[j, :n].float().cpu().contiguous()
    for name, n, mean_ll in rows:
        click.echo(f"{name}\tlength={n}\tmean_log_likelihood={mean_ll:.4f}")
    if out:
        save_file(tensors, out, metadata={"model": m.name, "layers": json.dumps(list(layers))})
        click.echo(f"wrote {len(tensors)} tensors to {out}")
