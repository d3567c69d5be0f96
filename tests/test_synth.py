"""Synthetic genome generator, methylation cohort and `train-lm` (small sizes, real files)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pysam
import pytest
from click.testing import CliRunner

from biointerp.cli import main
from biointerp.synth import (CONSEQUENCE_LABELS, GENETIC_CODE, STOP_CODONS, TF_MOTIFS, PRESETS, SynthConfig,
                             build, generate_genome, make_methylation_cohort, read_elements, reverse_complement,
                             translate)

TINY = SynthConfig(**PRESETS["tiny"], seed=7)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth_tiny")
    build(out, TINY)
    return out


def _tx(fa: pysam.FastaFile, r) -> str:
    """Feature sequence on its own strand."""
    s = fa.fetch(r.chrom, r.start - 1, r.end)
    return s if r.strand == "+" else reverse_complement(s)


def test_same_seed_same_bytes_other_seed_differs(tiny_dir, tmp_path):
    build(tmp_path / "again", TINY)
    for name in ("genome.fa", "elements.gff3", "elements.bed", "variants.vcf.gz", "variants.tsv"):
        assert (tiny_dir / name).read_bytes() == (tmp_path / "again" / name).read_bytes(), name
    other = generate_genome(SynthConfig(**PRESETS["tiny"], seed=8))
    fa = pysam.FastaFile(str(tiny_dir / "genome.fa"))
    assert other.contigs["synth1"] != fa.fetch("synth1")


def test_annotations_agree_with_sequence(tiny_dir):
    fa = pysam.FastaFile(str(tiny_dir / "genome.fa"))
    el = read_elements(tiny_dir / "elements.gff3")  # read back what was written
    n = el["type"].value_counts()
    assert n["gene"] >= 6 and n["five_prime_cis_splice_site"] >= 10 and n["CpG_island"] >= 2
    for r in el[el["type"] == "five_prime_cis_splice_site"].itertuples():
        assert _tx(fa, r).startswith("GT"), r
    for r in el[el["type"] == "three_prime_cis_splice_site"].itertuples():
        assert _tx(fa, r).endswith("AG"), r
    for r in el[el["type"] == "intron"].itertuples():
        s = _tx(fa, r)
        assert s[:2] == "GT" and s[-2:] == "AG"
    for r in el[el["type"] == "start_codon"].itertuples():
        assert _tx(fa, r) == "ATG"
    for r in el[el["type"] == "stop_codon"].itertuples():
        assert _tx(fa, r) in STOP_CODONS
    for r in el[el["type"] == "TATA_box"].itertuples():
        assert _tx(fa, r) == "TATAAA"
    for r in el[el["type"] == "TF_binding_site"].itertuples():
        name = r.name.split("(")[0]
        assert fa.fetch(r.chrom, r.start - 1, r.end) in (TF_MOTIFS[name], reverse_complement(TF_MOTIFS[name]))
    # CDS: frame and phase consistent, ATG ... stop, no premature stop, stop at the CDS end
    cds = el[el["type"] == "CDS"]
    for tx, parts in cds.groupby("parent"):
        strand = parts["strand"].iloc[0]
        parts = parts.sort_values("start", ascending=(strand == "+"))
        done, seq = 0, ""
        for r in parts.itertuples():
            assert int(r.phase) == (3 - done % 3) % 3, (tx, r)
            piece = _tx(fa, r)
            seq += piece
            done += len(piece)
        assert len(seq) % 3 == 0 and seq[:3] == "ATG" and seq[-3:] in STOP_CODONS, tx
        prot = translate(seq)
        assert "*" not in prot[:-1], tx
    # every exon boundary inside a transcript is followed by GT (donor) on the transcript strand
    genome_seq = {c: fa.fetch(c) for c in fa.references}
    for tx, ex in el[el["type"] == "exon"].groupby("parent"):
        strand = ex["strand"].iloc[0]
        ex = ex.sort_values("start")
        for a, b in zip(ex.itertuples(), list(ex.itertuples())[1:]):
            intron = genome_seq[a.chrom][a.end:b.start - 1]
            if strand == "-":
                intron = reverse_complement(intron)
            assert intron[:2] == "GT" and intron[-2:] == "AG", tx


def test_cpg_islands_stand_out_of_a_cpg_depleted_background():
    g = generate_genome(SynthConfig(n_contigs=1, contig_length=150_000, seed=3))
    seq = g.contigs["synth1"]
    isl = np.zeros(len(seq), dtype=bool)
    for r in g.elements[g.elements["type"] == "CpG_island"].itertuples():
        isl[r.start - 1:r.end] = True

    def oe(s: str) -> float:
        return s.count("CG") * len(s) / max(1, s.count("C") * s.count("G"))

    inside = "|".join(seq[r.start - 1:r.end] for r in g.elements[g.elements["type"] == "CpG_island"].itertuples())
    outside = "".join(np.array(list(seq))[~isl])
    assert oe(inside) > 0.75 and oe(outside) < 0.45
    assert (inside.count("G") + inside.count("C")) / len(inside) > 0.6
    reps = g.elements[g.elements["type"].isin(["repeat_region", "microsatellite"])]
    assert len(reps) >= 5


def test_variants_follow_the_biology(tiny_dir):
    from biointerp.genome import Genome
    from biointerp.variants import read_variants

    tsv = pd.read_csv(tiny_dir / "variants.tsv", sep="\t", keep_default_na=False)
    assert set(tsv["consequence"]) == set(CONSEQUENCE_LABELS)
    assert (tsv["label"] == tsv["consequence"].map(CONSEQUENCE_LABELS)).all()
    assert {"gene", "consequence", "label", "split"} <= set(tsv.columns)
    assert set(tsv["split"]) == {"train", "test"}
    assert ((tsv["ref"].str.len() != 1) | (tsv["alt"].str.len() != 1)).sum() > 10  # indels present
    # the VCF is bgzipped + tabix-indexed, REF matches the genome and alleles are already normalised
    vcf = pysam.VariantFile(str(tiny_dir / "variants.vcf.gz"))
    assert len(list(vcf.fetch("synth1", 0, 10_000))) > 0
    table = read_variants(tiny_dir / "variants.vcf.gz", genome=Genome(tiny_dir / "genome.fa"))
    assert (table["status"] == "ok").all(), table.loc[table["status"] != "ok", "status_detail"].head()
    assert list(table["variant_id"]) == list(tsv["variant_id"])
    # recompute coding consequences of SNVs from the written GFF + FASTA
    fa = pysam.FastaFile(str(tiny_dir / "genome.fa"))
    el = read_elements(tiny_dir / "elements.gff3")
    cds = el[el["type"] == "CDS"]
    dom = el[el["type"] == "polypeptide_domain"]
    checked = 0
    for v in tsv[tsv["consequence"].isin(["synonymous", "nonsense", "missense_domain",
                                          "missense_outside_domain"])].itertuples():
        parts = cds[cds["parent"] == f"{v.gene}.t1"]
        strand = parts["strand"].iloc[0]
        pos = [p for r in parts.sort_values("start").itertuples() for p in range(r.start, r.end + 1)]
        if strand == "-":
            pos = pos[::-1]
        seq = "".join(fa.fetch(v.chrom, p - 1, p) for p in pos)
        if strand == "-":
            seq = reverse_complement(seq)[::-1]  # complement, still in transcript order
        i = pos.index(v.pos)
        alt = v.alt if strand == "+" else reverse_complement(v.alt)
        mut = seq[:i] + alt + seq[i + 1:]
        c = i // 3
        a0, a1 = GENETIC_CODE[seq[3 * c:3 * c + 3]], GENETIC_CODE[mut[3 * c:3 * c + 3]]
        in_dom = ((dom["parent"] == f"{v.gene}.t1") & (dom["start"] <= v.pos) & (dom["end"] >= v.pos)).any()
        expect = {"synonymous": a0 == a1, "nonsense": a1 == "*" and a0 != "*",
                  "missense_domain": a0 != a1 and a1 != "*" and in_dom,
                  "missense_outside_domain": a0 != a1 and a1 != "*"}[v.consequence]
        assert expect, v
        checked += 1
    assert checked >= 20


def test_methylation_cohort_cases_differ_at_dmr_only(tiny_dir):
    fa = pysam.FastaFile(str(tiny_dir / "genome.fa"))
    contigs = {c: fa.fetch(c) for c in fa.references}
    el = read_elements(tiny_dir / "elements.gff3")
    beta, samples, truth = make_methylation_cohort(contigs, el, n_cases=30, n_controls=30, n_cpgs=300,
                                                   n_dmr_islands=2, effect=0.35, seed=1)
    assert beta.shape == (len(truth), 60) and list(beta.columns) == list(samples["sample"])
    case = samples["condition"].eq("case").to_numpy()
    diff = beta.to_numpy()[:, case].mean(1) - beta.to_numpy()[:, ~case].mean(1)
    dmr = truth["dmr"].to_numpy()
    assert dmr.sum() >= 5
    assert np.abs(diff[dmr] - 0.35).mean() < 0.08
    assert np.abs(diff[~dmr]).max() < 0.12
    isl = truth["island"].to_numpy()
    assert beta.to_numpy()[isl & ~dmr].mean() < 0.3 < 0.6 < beta.to_numpy()[~isl].mean()


def test_cli_synth_genome_and_cohort(tmp_path):
    r = CliRunner().invoke(main, ["synth", "genome", "--preset", "tiny", "--seed", "3", "--out", str(tmp_path / "g")])
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "g" / "manifest.json").read_text())
    assert m["config"]["seed"] == 3 and m["n_genes"] > 0
    r = CliRunner().invoke(main, ["synth", "cohort", "--fasta", str(tmp_path / "g" / "genome.fa"), "--gff",
                                  str(tmp_path / "g" / "elements.gff3"), "--out", str(tmp_path / "c"),
                                  "--cases", "5", "--controls", "6", "--cpgs", "50"])
    assert r.exit_code == 0, r.output
    beta = pd.read_csv(tmp_path / "c" / "methylation_beta.tsv.gz", sep="\t", index_col=0)
    assert beta.shape[1] == 11 and beta.index.name == "cpg"
    r = CliRunner().invoke(main, ["synth", "cohort", "--fasta", str(tmp_path / "nope.fa"), "--gff", "x.gff3",
                                  "--out", str(tmp_path / "c2")])
    assert r.exit_code != 0 and "nope.fa" in r.output


# ----------------------------------------------------------------------------------------- train-lm
def _train_args(fasta: Path, out: Path, steps: int) -> list[str]:
    return ["train-lm", "--fasta", str(fasta), "--out", str(out), "--exclude-contig", "synth2", "--d-model", "16",
            "--heads", "2", "--seq-len", "64", "--batch-size", "4", "--steps", str(steps), "--warmup", "2",
            "--eval-every", "2", "--checkpoint-every", "2", "--lr", "0.01", "--val-fraction", "0.05",
            "--threads", "1"]


def test_train_lm_deterministic_resumable_and_loadable(tiny_dir, tmp_path):
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file

    from biointerp.models import load_model

    fasta = tiny_dir / "genome.fa"
    run = CliRunner().invoke
    r = run(main, _train_args(fasta, tmp_path / "a", 6))
    assert r.exit_code == 0, r.output
    # same seed -> same weights; a run stopped at step 4 and resumed ends identical
    r = run(main, _train_args(fasta, tmp_path / "b", 6) + ["--stop-after", "4"])
    assert r.exit_code == 0 and "stopped at step 4" in r.output, r.output
    assert not (tmp_path / "b" / "model.safetensors").exists()
    r = run(main, _train_args(fasta, tmp_path / "b", 6))
    assert r.exit_code != 0 and "--resume" in r.output  # refuses to overwrite silently
    r = run(main, _train_args(fasta, tmp_path / "b", 6) + ["--resume"])
    assert r.exit_code == 0, r.output
    assert "resuming from step 4" in r.output
    wa, wb = load_file(str(tmp_path / "a" / "model.safetensors")), load_file(str(tmp_path / "b" / "model.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    card = json.loads((tmp_path / "a" / "card.json").read_text())
    assert card["recipe"].startswith("biointerp train-lm --fasta") and "--exclude-contig synth2" in card["recipe"]
    assert [c["step"] for c in card["loss_curve"]] == [2, 4, 6]
    assert card["data"]["files"][0]["sha256"] and card["data"]["files"][0]["synth"]["config"]["seed"] == 7
    assert "synth2" not in card["data"]["files"][0]["contigs"] or card["data"]["excluded_contigs"] == ["synth2"]
    with safe_open(str(tmp_path / "a" / "model.safetensors"), "pt") as f:
        assert json.loads(f.metadata()["card"])["recipe"] == card["recipe"]
    model = load_model(tmp_path / "a")
    ids, _ = model.tokenize(["ACGTACGTAAGT"])
    assert model.log_probs(ids).shape == (1, 11)
    # a few more steps lower the loss (it learns something)
    r = run(main, _train_args(fasta, tmp_path / "c", 30))
    curve = json.loads((tmp_path / "c" / "card.json").read_text())["loss_curve"]
    assert curve[-1]["train_loss"] < curve[0]["train_loss"] - 0.3


def test_train_lm_clear_errors(tmp_path, tiny_dir):
    r = CliRunner().invoke(main, ["train-lm", "--fasta", str(tmp_path / "missing.fa"), "--out", str(tmp_path / "o")])
    assert r.exit_code != 0 and "missing.fa" in r.output
    bad = tmp_path / "bad.fa"
    bad.write_text("ACGT\n")
    r = CliRunner().invoke(main, ["train-lm", "--fasta", str(bad), "--out", str(tmp_path / "o")])
    assert r.exit_code != 0 and "not a FASTA" in r.output
    r = CliRunner().invoke(main, _train_args(tiny_dir / "genome.fa", tmp_path / "o2", 2)[:-2] +
                           ["--exclude-contig", "chrX"])
    assert r.exit_code != 0 and "chrX" in r.output


def test_more_test_variants_leave_training_variants_unchanged():
    """``test_variants_per_class`` enlarges only the held-out contig's variant set."""
    from dataclasses import replace

    from biointerp.synth import make_variants

    g = generate_genome(replace(TINY, variants_per_class=2))
    base = make_variants(g)
    more = make_variants(generate_genome(replace(TINY, variants_per_class=2, test_variants_per_class=5)))
    assert base[base.split == "train"].equals(more[more.split == "train"].reset_index(drop=True))
    assert (more.split == "test").sum() > 2 * (base.split == "test").sum()
    assert more[more.split == "test"].groupby("consequence").size().max() == 5
