"""``biointerp synth``: synthetic genomes with planted biology and simulated cohorts."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click


@click.group("synth")
def synth() -> None:
    """Synthetic "model organism" genomes (ground truth for interpretability)."""


@synth.command("genome")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output directory.")
@click.option("--preset", type=click.Choice(["default", "demo", "tiny"]), default="default", show_default=True,
              help="Size preset: default ~3 Mb, demo ~0.8 Mb, tiny ~80 kb.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed (same seed, same bytes).")
@click.option("--contigs", "n_contigs", type=click.IntRange(1, 1000), default=None, help="Number of contigs.")
@click.option("--contig-length", type=click.IntRange(10_000, 100_000_000), default=None, help="bp per contig.")
@click.option("--variants-per-class", type=click.IntRange(1, 100_000), default=None,
              help="Upper bound of variants per contig and consequence class.")
@click.option("--test-variants-per-class", type=click.IntRange(1, 100_000), default=None,
              help="The same bound on the test contig (default: --variants-per-class); more test variants "
                   "narrow the held-out confidence intervals, the training variants stay the same.")
@click.option("--novel-family-contigs", type=click.IntRange(0, 100), default=0, show_default=True,
              help="Extra held-out contigs whose genes carry their own protein-domain families (none shared with "
                   "the other contigs); the other contigs and their variants stay byte-identical. Their variants "
                   "are in the test split with families=novel (the last ordinary contig: families=shared).")
@click.option("--no-variants", is_flag=True, help="Skip the labelled variant set.")
def genome_cmd(out_dir, preset, seed, n_contigs, contig_length, variants_per_class, test_variants_per_class,
               novel_family_contigs,
               no_variants) -> None:
    """Generate genome.fa(+.fai), elements.gff3/.bed, variants.vcf.gz(+.tbi)/.tsv, manifest.json.

    Labels follow the planted biology: splice donor/acceptor, start/stop loss,
    nonsense, frameshift, missense or in-frame deletion in a conserved domain and
    TF-motif disruption are `damaging`; synonymous, missense outside domains,
    deep intronic and intergenic changes are `neutral`. The last contig is the
    `test` split.
    """
    from biointerp.synth import PRESETS, SynthConfig, build

    kw = dict(PRESETS[preset], seed=seed)
    if n_contigs is not None:
        kw["n_contigs"] = n_contigs
    if contig_length is not None:
        kw["contig_length"] = contig_length
    if variants_per_class is not None:
        kw["variants_per_class"] = variants_per_class
    if test_variants_per_class is not None:
        kw["test_variants_per_class"] = test_variants_per_class
    if novel_family_contigs:
        kw["novel_family_contigs"] = novel_family_contigs
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise click.UsageError(f"--out {out} exists and is not a directory; choose a directory path.")
    command = " ".join(["biointerp", "synth", "genome"] + [shlex.quote(a) for a in sys.argv[3:]]) \
        if sys.argv[1:3] == ["synth", "genome"] else None
    m = build(out, SynthConfig(**kw), variants=not no_variants, command=command, progress=True)
    click.echo(f"wrote {out}: {sum(m['contigs'].values()):,} bp in {len(m['contigs'])} contigs, "
               f"{m['n_genes']} genes, {m['n_elements']} elements, {m['n_variants']} variants")


@synth.command("cohort")
@click.option("--fasta", required=True, type=click.Path(dir_okay=False), help="genome.fa from `synth genome`.")
@click.option("--gff", required=True, type=click.Path(dir_okay=False), help="elements.gff3 from `synth genome`.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output directory.")
@click.option("--cases", type=click.IntRange(1, 100_000), default=40, show_default=True)
@click.option("--controls", type=click.IntRange(1, 100_000), default=40, show_default=True)
@click.option("--cpgs", type=click.IntRange(10, 10_000_000), default=1000, show_default=True,
              help="CpG sites to report (about half in CpG islands).")
@click.option("--dmr-islands", type=click.IntRange(0, 10_000), default=5, show_default=True,
              help="CpG islands whose CpGs differ in cases.")
@click.option("--effect", type=click.FloatRange(-0.9, 0.9), default=0.35, show_default=True,
              help="Mean beta shift of DMR CpGs in cases.")
@click.option("--missing-rate", type=click.FloatRange(0, 0.9), default=0.0, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def cohort_cmd(fasta, gff, out_dir, cases, controls, cpgs, dmr_islands, effect, missing_rate, seed) -> None:
    """Simulate per-sample CpG methylation (beta values) for cases and controls.

    Writes methylation_beta.tsv.gz (CpG rows x sample columns, like the TCGA
    table in ../shared/data/cohorts), samples.tsv (sample, condition) and
    cpg_truth.tsv (which CpGs are in islands / differentially methylated).
    """
    from biointerp.synth import make_methylation_cohort, read_elements, write_cohort
    from biointerp.train_lm import read_fasta

    for opt, p in (("--fasta", fasta), ("--gff", gff)):
        if not Path(p).exists():
            raise click.UsageError(f"{opt} {p} not found; run `biointerp synth genome --out DIR` first.")
    try:
        contigs = read_fasta(fasta)
        elements = read_elements(gff)
    except (ValueError, KeyError) as err:
        raise click.ClickException(f"cannot read {fasta} / {gff}: {err}") from err
    if not (elements["type"] == "CpG_island").any():
        raise click.ClickException(f"{gff} has no CpG_island features; use an elements.gff3 from `synth genome`.")
    beta, samples, truth = make_methylation_cohort(contigs, elements, cases, controls, cpgs, dmr_islands,
                                                   effect, missing_rate, seed)
    paths = write_cohort(beta, samples, truth, out_dir)
    click.echo(f"wrote {paths['beta']}: {beta.shape[0]} CpGs x {beta.shape[1]} samples "
               f"({int(truth['dmr'].sum())} differentially methylated CpGs)")
