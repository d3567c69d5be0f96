"""``biointerp train-lm``: train a small StripedHyena 2 DNA language model on FASTA files."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("train-lm")
@click.option("--fasta", multiple=True, required=True, type=click.Path(dir_okay=False),
              help="Training FASTA (plain or gzip); repeat for several files.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output directory.")
@click.option("--exclude-contig", multiple=True, help="Contig to hold out of training (repeatable).")
@click.option("--d-model", type=click.IntRange(8, 4096), default=64, show_default=True)
@click.option("--layers", type=click.IntRange(1, 64), default=8, show_default=True,
              help="Blocks; 8 uses the Evo 2 7B pattern hcs hcm hcl attn hcs hcm hcl attn.")
@click.option("--heads", type=click.IntRange(1, 64), default=4, show_default=True)
@click.option("--hcm-filter-length", type=click.IntRange(2, 4096), default=128, show_default=True)
@click.option("--seq-len", type=click.IntRange(16, 65536), default=512, show_default=True)
@click.option("--batch-size", type=click.IntRange(1, 4096), default=16, show_default=True)
@click.option("--steps", type=click.IntRange(1, 10_000_000), default=1000, show_default=True)
@click.option("--lr", type=click.FloatRange(0, 1, min_open=True), default=3e-3, show_default=True)
@click.option("--min-lr-ratio", type=click.FloatRange(0, 1), default=0.1, show_default=True)
@click.option("--warmup", type=click.IntRange(1, 10_000_000), default=100, show_default=True)
@click.option("--weight-decay", type=click.FloatRange(0, 1), default=0.01, show_default=True)
@click.option("--grad-clip", type=click.FloatRange(0), default=1.0, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--val-fraction", type=click.FloatRange(0, 0.5), default=0.02, show_default=True,
              help="Tail of each contig held out for the validation loss.")
@click.option("--eval-every", type=click.IntRange(1), default=100, show_default=True)
@click.option("--checkpoint-every", type=click.IntRange(1), default=200, show_default=True)
@click.option("--threads", type=click.IntRange(0, 512), default=0, help="torch CPU threads (0: default).")
@click.option("--resume", is_flag=True, help="Continue from OUT/checkpoint.* (same settings required).")
@click.option("--stop-after", type=click.IntRange(1), default=None,
              help="Stop after this many steps (checkpoint only); continue later with --resume.")
def train_lm(fasta, out, exclude_contig, d_model, layers, heads, hcm_filter_length, seq_len, batch_size, steps,
             lr, min_lr_ratio, warmup, weight_decay, grad_clip, seed, val_fraction, eval_every,
             checkpoint_every, threads, resume, stop_after) -> None:
    """Train a causal DNA LM (native StripedHyena 2, byte tokens) on FASTA files.

    Writes OUT/config.yml, OUT/model.safetensors (card in the metadata),
    OUT/card.json (config, data fingerprint, loss curve, the exact recipe
    command) and OUT/checkpoint.* for --resume. Deterministic given --seed.
    """
    from biointerp.train_lm import TrainConfig, train

    for f in fasta:
        if not Path(f).exists():
            raise click.UsageError(f"--fasta {f} not found; give a FASTA file (plain or .gz).")
    if d_model % heads:
        raise click.UsageError(f"--d-model {d_model} must be divisible by --heads {heads}.")
    out_p = Path(out)
    if out_p.exists() and (out_p / "checkpoint.json").exists() and not resume:
        raise click.UsageError(f"{out} already holds a training run; pass --resume to continue it "
                               "or choose another --out.")
    cfg = TrainConfig(fasta=list(fasta), out=out, exclude_contig=list(exclude_contig), d_model=d_model,
                      layers=layers, heads=heads, hcm_filter_length=hcm_filter_length, seq_len=seq_len,
                      batch_size=batch_size, steps=steps, lr=lr, min_lr_ratio=min_lr_ratio, warmup=warmup,
                      weight_decay=weight_decay, grad_clip=grad_clip, seed=seed, val_fraction=val_fraction,
                      eval_every=eval_every, checkpoint_every=checkpoint_every, threads=threads)
    try:
        card = train(cfg, resume=resume, log=click.echo, stop_after=stop_after)
    except (ValueError, FileNotFoundError) as err:
        raise click.ClickException(str(err)) from err
    if "stopped_at" in card:
        click.echo(f"stopped at step {card['stopped_at']} of {steps}; continue with the same command and --resume")
        return
    fin = card.get("final", {})
    click.echo(f"wrote {out}/model.safetensors ({card['n_parameters']:,} parameters); final train loss "
               f"{fin.get('train_loss')}, val loss {fin.get('val_loss')} nats/base")
