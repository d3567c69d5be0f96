"""``biointerp variants``: read, check and normalise variant files."""

from __future__ import annotations

import time
from pathlib import Path

import click


@click.group(name="variants")
def variants() -> None:
    """Read and check variant files (VCF/BCF/TSV/CSV/Parquet) against a reference."""


@variants.command(name="check")
@click.option("--fasta", "fasta", type=click.Path(dir_okay=False), default=None,
              help="Reference FASTA (plain or bgzip; region headers like >chr17:41100001-41300000 work). "
                   "Without it REF is not checked and contigs keep their input names.")
@click.option("--vcf", "--variants", "vcf", type=click.Path(dir_okay=False), required=True,
              help="Variants: .vcf, .vcf.gz, .bcf, .tsv, .csv or .parquet.")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Write the normalised table here (.parquet, .tsv or .csv).")
@click.option("--info", "info", multiple=True, metavar="KEY",
              help="INFO key to keep as a column (repeatable; comma lists allowed), e.g. --info CLINICAL_SIGNIFICANCE.")
@click.option("--region", default=None, metavar="CHR:START-END",
              help="Only records with POS in this region (1-based inclusive, contig aliases accepted).")
@click.option("--max-allele-len", type=click.IntRange(min=1), default=None,
              help="Alleles longer than this get status too_long (default 1000).")
@click.option("--label/--no-label", default=False,
              help="Add a ClinVar 'label' column (pathogenic/benign/other) from CLINICAL_SIGNIFICANCE.")
@click.option("--min-stars", type=click.IntRange(0, 4), default=0,
              help="With --label: fewer review stars (GOLD_STARS) than this gives 'other'.")
@click.option("--on-error", type=click.Choice(["raise", "status"]), default="raise", show_default=True,
              help="A malformed record (wrong column count, non-integer POS): stop with an error naming "
                   "the line, or keep it as a row with status 'malformed'.")
@click.option("--show", type=click.IntRange(min=0), default=5,
              help="Print up to N example rows per non-ok status.")
@click.option("--index-dir", type=click.Path(file_okay=False), default=None,
              help="Folder for the FASTA's .fai/.gzi index [default: beside the FASTA when that folder is "
                   "writable (samtools' convention), else $BIOINTERP_CACHE or ~/.cache/biointerp].")
def check(fasta: str | None, vcf: str, out: str | None, info: tuple[str, ...], region: str | None,
          max_allele_len: int | None, label: bool, min_stars: int, on_error: str, show: int,
          index_dir: str | None = None) -> None:
    """Read VARIANTS, check them against FASTA, print a status summary, write the table.

    Every input record appears once per ALT with a status (ok, ref_mismatch,
    unknown_contig, out_of_bounds, symbolic_allele, too_long, invalid_allele,
    duplicate, malformed) and a status_detail. An input without records is not an
    error here (the summary says "no variants"); `score` and `harvest` refuse it.

    Example: biointerp variants check --fasta brca1_region.GRCh37.fa
    --vcf clinvar.vcf.gz --region 17:41100001-41300000 --info CLINICAL_SIGNIFICANCE --out v.parquet
    """
    from biointerp.genome import Genome, GenomeError
    from biointerp.variants import (MAX_ALLELE_LEN, VariantInputError, clinvar_labels, parse_region,
                                    read_variants, status_counts)

    if out is not None and not out.lower().endswith((".parquet", ".pq", ".tsv", ".csv", ".tsv.gz", ".csv.gz")):
        raise click.BadParameter(f"{out}: use a .parquet, .tsv or .csv file name", param_hint="--out")
    keys = [k.strip() for item in info for k in item.split(",") if k.strip()]
    if label:
        for k in ("CLINICAL_SIGNIFICANCE", "GOLD_STARS"):
            if k not in keys:
                keys.append(k)
    if region is not None:
        try:
            parse_region(region)
        except ValueError as err:
            raise click.BadParameter(str(err), param_hint="--region") from err
    t0 = time.perf_counter()
    try:
        genome = Genome(fasta, index_dir=index_dir) if fasta else None
        table = read_variants(vcf, genome, info_fields=keys, region=region,
                              max_allele_len=max_allele_len or MAX_ALLELE_LEN, progress=True,
                              on_error=on_error)
    except (GenomeError, VariantInputError) as err:
        recoverable = "tab-separated columns" in str(err) or "integer position" in str(err)
        hint = " (or pass --on-error status to keep malformed records as status rows)" \
            if recoverable and on_error == "raise" else ""
        raise click.ClickException(f"{err}{hint}") from err
    if label:
        table["label"] = clinvar_labels(table["CLINICAL_SIGNIFICANCE"], table["GOLD_STARS"], min_stars).to_numpy()
    elapsed = time.perf_counter() - t0

    counts = status_counts(table)
    n_rec = int(table["record"].nunique()) if len(table) else 0
    click.echo(f"file      {vcf}")
    if fasta:
        click.echo(f"reference {fasta} ({', '.join(f'{c}:{genome.bounds(c)[0]}-{genome.bounds(c)[1]}' for c in genome.contigs[:5])}"
                   f"{' ...' if len(genome.contigs) > 5 else ''})")
    click.echo(f"records   {n_rec}")
    if not len(table):
        click.echo(f"no variants: {vcf} holds no records{' in ' + region if region else ''}", err=True)
    click.echo(f"rows      {len(table)} (one per ALT)")
    for st, n in counts.items():
        click.echo(f"  {st:<16}{n:>9}")
    if label:
        vc = table["label"].value_counts()
        click.echo("labels    " + ", ".join(f"{k}={int(vc.get(k, 0))}" for k in ("pathogenic", "benign", "other"))
                   + f" (min stars {min_stars})")
    if show:
        for st in counts:
            if st == "ok" or not counts[st]:
                continue
            rows = table[table["status"] == st].head(show)
            click.echo(f"-- {st} (first {len(rows)}):")
            for r in rows.itertuples():
                click.echo(f"   record {r.record}: {r.input_chrom}:{r.input_pos}:{r.input_ref}:{r.input_alt}  {r.status_detail}")
    if out is not None:
        path = Path(out)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.name.lower().endswith((".parquet", ".pq")):
                table.to_parquet(path, index=False)
            else:
                table.to_csv(path, sep="," if ".csv" in path.name.lower() else "\t", index=False)
        except OSError as err:
            raise click.ClickException(f"cannot write {out}: {err}") from err
        click.echo(f"wrote     {out}")
    click.echo(f"time      {elapsed:.2f} s")
