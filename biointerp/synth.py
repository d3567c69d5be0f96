"""Synthetic "model organism" genomes with planted, annotated biology.

A seeded generator builds contigs of a CpG-depleted background into which it
plants genes (promoter with TF motifs and a TATA box, optional CpG island,
5' UTR, coding exons in frame with a codon-usage table and conserved
protein-like domains, introns with GT..AG splice consensus, branch point and
polypyrimidine tract, 3' UTR with a polyA signal) and repeats (three
transposon-like families and microsatellites). Every planted element is
annotated, so interpretability methods can be checked against ground truth.

It also draws a labelled variant set whose labels follow the planted biology
(``damaging``: splice donor/acceptor, start/stop loss, nonsense, missense or
in-frame deletion inside a conserved domain, frameshift, TF-motif disruption;
``neutral``: synonymous, missense outside domains, deep intronic, intergenic,
indels in deep introns or intergenic DNA) and a simulated CpG methylation
cohort in which cases differ from controls at chosen CpG islands.

Coordinates in the element table are 1-based inclusive (GFF3 style); the BED
output is 0-based half-open. Variants are VCF-anchored, left-normalised, with
canonical ids ``chrom:pos:ref:alt``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

BASES = "ACGT"
_COMP = str.maketrans("ACGTNacgtn", "TGCANtgcan")

GENETIC_CODE: dict[str, str] = {}
_AA_ORDER = "FFLLSSSSYY**CC*WLLLLPPPPHHQQRRRRIIIMTTTTNNKKSSRRVVVVAAAADDEEGGGG"
for _i, _a in enumerate("TCAG"):
    for _j, _b in enumerate("TCAG"):
        for _k, _c in enumerate("TCAG"):
            GENETIC_CODE[_a + _b + _c] = _AA_ORDER[16 * _i + 4 * _j + _k]
STOP_CODONS = ("TAA", "TAG", "TGA")
AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"
#: Approximate vertebrate amino-acid frequencies (percent), order of AMINO_ACIDS.
_AA_FREQ = np.array([7.0, 2.3, 4.7, 7.1, 3.7, 6.6, 2.6, 4.4, 5.7, 10.0,
                     2.2, 3.6, 6.3, 4.7, 5.6, 8.3, 5.4, 6.0, 1.3, 2.7])
_AA_FREQ = _AA_FREQ / _AA_FREQ.sum()

#: Planted transcription-factor motifs (consensus, forward strand).
TF_MOTIFS: dict[str, str] = {
    "SP1": "GGGGCGGGGC",
    "CREB": "TGACGTCA",
    "NFY": "CCAATCAG",
    "NRF1": "GCGCATGCGC",
    "ETS": "ACCGGAAGT",
    "YY1": "AAGATGGCGGC",
}
TATA_BOX = "TATAAA"
POLYA_SIGNAL = "AATAAA"
DONOR_CONSENSUS = ("GTAAGT", "GTGAGT")
BRANCH_POINTS = ("CTAAC", "CTGAC", "CTAAT", "CTGAT")

#: Consequence classes and their labels.
CONSEQUENCE_LABELS: dict[str, str] = {
    "splice_donor": "damaging",
    "splice_acceptor": "damaging",
    "start_lost": "damaging",
    "stop_lost": "damaging",
    "nonsense": "damaging",
    "missense_domain": "damaging",
    "frameshift": "damaging",
    "inframe_deletion_domain": "damaging",
    "motif_disruption": "damaging",
    "synonymous": "neutral",
    "missense_outside_domain": "neutral",
    "deep_intronic": "neutral",
    "intergenic": "neutral",
    "deep_intronic_indel": "neutral",
    "intergenic_indel": "neutral",
}

#: Element types used for per-position ground truth (see :func:`position_labels`).
POSITION_CLASSES: dict[str, tuple[str, ...]] = {
    "exon": ("exon",),
    "splice_site": ("five_prime_cis_splice_site", "three_prime_cis_splice_site"),
    "motif": ("TF_binding_site", "TATA_box"),
    "cpg_island": ("CpG_island",),
}


@dataclass
class SynthConfig:
    """Parameters of a synthetic genome (all sizes in bp unless noted)."""

    seed: int = 0
    n_contigs: int = 4
    contig_length: int = 250_000
    contig_prefix: str = "synth"
    gc: float = 0.40
    cpg_depletion: float = 0.8  # fraction of background CpGs mutated away
    gap_range: tuple[int, int] = (1500, 6000)
    n_domain_families: int = 8
    domain_aa_range: tuple[int, int] = (30, 50)
    domains_per_gene: tuple[int, int] = (1, 3)  # [low, high) conserved domains per protein
    protein_aa_range: tuple[int, int] = (150, 380)
    exons_range: tuple[int, int] = (2, 7)
    intron_range: tuple[int, int] = (120, 900)
    cpg_island_fraction: float = 0.6
    repeat_probability: float = 0.6
    domain_divergence: float = 0.04  # per-codon change rate of domain copies
    repeat_divergence: float = 0.10
    variants_per_class: int = 40  # per contig and consequence class (upper bound)
    #: the same bound on the test contig(s); None = variants_per_class. A larger test set
    #: narrows held-out confidence intervals without changing the training variants.
    test_variants_per_class: int | None = None
    #: extra contigs (after the ``n_contigs`` ones, which stay byte-identical) whose genes carry
    #: their own domain families, none shared with the other contigs: a held-out set that tests
    #: generalisation rather than recognition of memorised families
    novel_family_contigs: int = 0

    def to_dict(self) -> dict:
        d = asdict(self)
        if not d["novel_family_contigs"]:  # configs (and model cards) without novel contigs stay as before
            d.pop("novel_family_contigs")
        return d


@dataclass
class SynthGenome:
    """A generated genome: sequences, element annotations and gene models."""

    config: SynthConfig
    contigs: dict[str, str]
    elements: pd.DataFrame
    genes: list[dict] = field(default_factory=list)
    codon_usage: dict[str, dict[str, float]] = field(default_factory=dict)


def reverse_complement(seq: str) -> str:
    """Reverse complement of an upper/lower-case DNA string."""
    return seq.translate(_COMP)[::-1]


def translate(cds: str) -> str:
    """Translate a coding sequence (length multiple of 3) with the standard code."""
    return "".join(GENETIC_CODE.get(cds[i:i + 3], "X") for i in range(0, len(cds) - 2, 3))


# --------------------------------------------------------------------------- sequence pieces
def _background(rng: np.random.Generator, n: int, gc: float, cpg_depletion: float) -> str:
    """iid sequence at a GC content with most CpGs removed (C->T or G->A, as by deamination)."""
    if n <= 0:
        return ""
    p = np.array([(1 - gc) / 2, gc / 2, gc / 2, (1 - gc) / 2])
    a = rng.choice(4, size=n, p=p).astype(np.int8)
    for _ in range(2):
        cg = np.flatnonzero((a[:-1] == 1) & (a[1:] == 2))
        hit = cg[rng.random(cg.size) < cpg_depletion]
        which = rng.random(hit.size) < 0.5
        a[hit[which]] = 3  # C -> T
        a[hit[~which] + 1] = 0  # G -> A
    return "".join(np.array(list(BASES))[a])


def _gc_rich(rng: np.random.Generator, n: int, gc: float = 0.68) -> str:
    p = np.array([(1 - gc) / 2, gc / 2, gc / 2, (1 - gc) / 2])
    return "".join(np.array(list(BASES))[rng.choice(4, size=n, p=p)])


def _mutate(rng: np.random.Generator, seq: str, rate: float) -> str:
    a = np.array(list(seq))
    hit = np.flatnonzero(rng.random(a.size) < rate)
    for i in hit:
        a[i] = BASES[(BASES.index(a[i]) + int(rng.integers(1, 4))) % 4]
    return "".join(a)


def _codon_usage(rng: np.random.Generator) -> dict[str, dict[str, float]]:
    by_aa: dict[str, list[str]] = {}
    for codon, aa in GENETIC_CODE.items():
        by_aa.setdefault(aa, []).append(codon)
    usage = {}
    for aa in sorted(by_aa):
        codons = sorted(by_aa[aa])
        w = rng.dirichlet(np.full(len(codons), 1.5))
        usage[aa] = {c: float(x) for c, x in zip(codons, w)}
    return usage


def _pick_codon(rng: np.random.Generator, usage: dict, aa: str) -> str:
    codons = list(usage[aa])
    return codons[int(rng.choice(len(codons), p=np.array(list(usage[aa].values()))))]


def _random_aa(rng: np.random.Generator, n: int) -> str:
    return "".join(np.array(list(AMINO_ACIDS))[rng.choice(20, size=n, p=_AA_FREQ)])


# --------------------------------------------------------------------------- genes
class _Block:
    """A growing forward-strand sequence with local 0-based half-open annotations."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.len = 0
        self.ann: list[tuple[str, int, int, dict]] = []

    def add(self, seq: str, ann_type: str | None = None, **attrs) -> tuple[int, int]:
        s = self.len
        self.parts.append(seq)
        self.len += len(seq)
        if ann_type:
            self.ann.append((ann_type, s, self.len, attrs))
        return s, self.len

    def seq(self) -> str:
        return "".join(self.parts)


def _make_gene(rng, cfg: SynthConfig, usage, domains, gid: str) -> tuple[str, list, dict]:
    """One gene in forward orientation: (sequence, annotations, gene model in local coords)."""
    b = _Block()
    upstream = 600
    island = rng.random() < cfg.cpg_island_fraction
    utr5_len = int(rng.integers(50, 150))
    if island:
        isl_up = int(rng.integers(350, 550))
        prom = _background(rng, upstream - isl_up, cfg.gc, cfg.cpg_depletion) + _gc_rich(rng, isl_up)
        utr5 = _gc_rich(rng, utr5_len)
    else:
        prom = _background(rng, upstream, cfg.gc, cfg.cpg_depletion)
        utr5 = _background(rng, utr5_len, cfg.gc, cfg.cpg_depletion)
    utr5 = utr5.replace("ATG", "ACG")  # the start codon is the first ATG of the transcript
    # motifs: TATA box at -30, 2-4 TF motifs between -300 and -45, non-overlapping
    prom_l = list(prom)
    motifs = []
    tata_at = upstream - 31
    prom_l[tata_at:tata_at + 6] = TATA_BOX
    motifs.append(("TATA_box", tata_at, tata_at + 6, "TATA", "+"))
    slots = sorted(rng.choice(np.arange(upstream - 300, upstream - 60, 20), size=int(rng.integers(2, 5)),
                              replace=False))
    used_end = -1
    for s in slots:
        s = int(s)
        name = list(TF_MOTIFS)[int(rng.integers(len(TF_MOTIFS)))]
        m = TF_MOTIFS[name]
        if s < used_end or s + len(m) > tata_at:
            continue
        strand = "+" if rng.random() < 0.5 else "-"
        prom_l[s:s + len(m)] = m if strand == "+" else reverse_complement(m)
        motifs.append(("TF_binding_site", s, s + len(m), name, strand))
        used_end = s + len(m) + 1
    b.add("".join(prom_l))
    b.ann.append(("promoter", upstream - 300, upstream, {}))
    for t, s, e, name, strand in motifs:
        b.ann.append((t, s, e, {"Name": name, "motif_strand": strand}))
    if island:
        b.ann.append(("CpG_island", upstream - isl_up, upstream + utr5_len, {}))
    tss = b.len
    b.add(utr5)

    # protein with 1-2 conserved domains
    n_aa = int(rng.integers(*cfg.protein_aa_range))
    n_dom = int(rng.integers(*cfg.domains_per_gene))
    fams = rng.choice(len(domains), size=n_dom, replace=False)
    dom_total = sum(len(domains[f][0]) for f in fams)
    free = max(n_aa - 1 - dom_total, 10)
    cuts = np.sort(rng.choice(free, size=n_dom, replace=False))
    codons: list[str] = ["ATG"]
    dom_spans = []  # (family, first codon index, last codon index exclusive)
    prev = 0
    for f, c in zip(fams, cuts):
        for aa in _random_aa(rng, int(c) - prev):
            codons.append(_pick_codon(rng, usage, aa))
        prev = int(c)
        fam_aa, fam_codons = domains[f][:2]
        start = len(codons)
        for aa, cod in zip(fam_aa, fam_codons):
            r = rng.random()
            if r < cfg.domain_divergence / 2:  # amino-acid substitution
                aa2 = _random_aa(rng, 1)
                codons.append(_pick_codon(rng, usage, aa2))
            elif r < cfg.domain_divergence:  # synonymous drift
                codons.append(_pick_codon(rng, usage, aa))
            else:
                codons.append(cod)
        dom_spans.append((domains[f][2] if len(domains[f]) > 2 else f"DOM{int(f) + 1}", start, len(codons)))
    for aa in _random_aa(rng, free - prev):
        codons.append(_pick_codon(rng, usage, aa))
    codons.append(STOP_CODONS[int(rng.integers(3))])
    cds = "".join(codons)

    # exon structure: cut the CDS at random points (exons >= 40 bp of CDS)
    n_ex = int(rng.integers(*cfg.exons_range))
    n_ex = max(1, min(n_ex, len(cds) // 80))
    cut = sorted(int(x) for x in rng.choice(np.arange(40, len(cds) - 40), size=n_ex - 1, replace=False))
    for i in range(1, len(cut)):
        if cut[i] - cut[i - 1] < 40:
            cut[i] = cut[i - 1] + 40
    cut = [c for c in cut if c < len(cds) - 40]
    pieces = [cds[a:b_] for a, b_ in zip([0] + cut, cut + [len(cds)])]
    cds_intervals: list[tuple[int, int]] = []
    exons: list[list[int]] = []
    introns: list[dict] = []
    ex_start = tss
    for i, piece in enumerate(pieces):
        s, e = b.add(piece)
        cds_intervals.append((s, e))
        if i == len(pieces) - 1:
            break
        exons.append([ex_start, e])
        ilen = int(rng.integers(*cfg.intron_range))
        donor = DONOR_CONSENSUS[int(rng.integers(2))]
        bp = BRANCH_POINTS[int(rng.integers(4))]
        ppt_len = int(rng.integers(12, 19))
        ppt = "".join(rng.choice(list("CT"), size=ppt_len, p=[0.45, 0.55]))
        spacer = _background(rng, int(rng.integers(4, 12)), cfg.gc, cfg.cpg_depletion)
        acc = ("C" if rng.random() < 0.7 else "T") + "AG"
        body_len = max(ilen - len(donor) - len(bp) - len(spacer) - ppt_len - 3, 20)
        body = _background(rng, body_len, cfg.gc, cfg.cpg_depletion)
        i0 = b.len
        b.add(donor)
        b.add(body)
        bps, bpe = b.add(bp)
        b.add(spacer)
        ppts, ppte = b.add(ppt)
        b.add(acc)
        introns.append({"start": i0, "end": b.len, "branch": (bps, bpe), "ppt": (ppts, ppte)})
        ex_start = b.len
    utr3_len = int(rng.integers(120, 300))
    utr3 = list(_background(rng, utr3_len, cfg.gc, cfg.cpg_depletion))
    pa = utr3_len - 25
    utr3[pa:pa + 6] = POLYA_SIGNAL
    s3, e3 = b.add("".join(utr3))
    exons.append([ex_start, e3])
    b.ann.append(("polyA_signal_sequence", s3 + pa, s3 + pa + 6, {}))
    model = {
        "id": gid, "tss": tss, "end": b.len, "exons": exons, "cds": cds_intervals,
        "introns": introns, "domains": dom_spans, "cds_seq": cds, "protein": translate(cds),
        "utr5": (tss, tss + utr5_len), "utr3": (s3, e3),
    }
    return b.seq(), b.ann, model


def _repeat_families(rng, cfg: SynthConfig) -> dict[str, tuple[str, str]]:
    """Consensus sequences of three transposon-like repeat families."""
    sine = _background(rng, 260, 0.5, 0.3) + "A" * 20
    line = _background(rng, 1200, 0.42, 0.5)
    tir = _background(rng, 30, 0.45, 0.5)
    dna = tir + _background(rng, 340, 0.45, 0.5) + reverse_complement(tir)
    return {"SynSINE": ("SINE", sine), "SynLINE": ("LINE", line), "SynDNA": ("DNA", dna)}


def _repeat_copy(rng, cfg, families) -> tuple[str, str, str, str]:
    r = rng.random()
    if r < 0.25:
        unit = ["CA", "AT", "GGC", "AAT", "TTTC"][int(rng.integers(5))]
        n = int(rng.integers(20, 60)) // len(unit)
        return unit * n, "microsatellite", f"({unit})n", "+"
    name = ["SynSINE", "SynLINE", "SynDNA"][int(rng.integers(3))]
    cls, cons = families[name]
    if name == "SynLINE":  # 5'-truncated copies
        cons = cons[int(rng.integers(0, len(cons) - 300)):]
    seq = _mutate(rng, cons, cfg.repeat_divergence)
    strand = "+" if rng.random() < 0.5 else "-"
    return (seq if strand == "+" else reverse_complement(seq)), "repeat_region", name, strand


def generate_genome(config: SynthConfig | None = None, progress: bool = False) -> SynthGenome:
    """Generate a synthetic genome with planted, annotated elements.

    Returns a :class:`SynthGenome`: ``contigs`` (name -> upper-case sequence),
    ``elements`` (one row per element: chrom, start, end 1-based inclusive,
    type, strand, id, parent, name, phase, attrs), ``genes`` (gene models in
    genome coordinates) and the ``codon_usage`` table. Same config -> same bytes.
    """
    cfg = config or SynthConfig()
    rng = np.random.default_rng(cfg.seed)
    usage = _codon_usage(rng)
    domains = []
    for _ in range(cfg.n_domain_families):
        aa = _random_aa(rng, int(rng.integers(*cfg.domain_aa_range)))
        domains.append((aa, [_pick_codon(rng, usage, a) for a in aa]))
    families = _repeat_families(rng, cfg)
    contigs: dict[str, str] = {}
    rows: list[dict] = []
    genes: list[dict] = []
    gene_no = 0
    rep_no = 0
    from tqdm.auto import tqdm

    specs = [(f"{cfg.contig_prefix}{ci + 1}", rng, domains) for ci in range(cfg.n_contigs)]
    if cfg.novel_family_contigs:
        # a separate stream: the first n_contigs contigs are the same bytes with or without these
        rng_novel = np.random.default_rng([cfg.seed, 1_000_033])
        novel = []
        for k in range(cfg.n_domain_families):
            aa = _random_aa(rng_novel, int(rng_novel.integers(*cfg.domain_aa_range)))
            novel.append((aa, [_pick_codon(rng_novel, usage, a) for a in aa], f"NOVEL_DOM{k + 1}"))
        specs += [(f"{cfg.contig_prefix}{cfg.n_contigs + j + 1}", rng_novel, novel)
                  for j in range(cfg.novel_family_contigs)]
    for chrom, rng, domains in tqdm(specs, desc="synth genome", unit="contig", disable=not progress):
        parts: list[str] = []
        pos = 0  # 0-based length so far
        while True:
            gap = _background(rng, int(rng.integers(*cfg.gap_range)), cfg.gc, cfg.cpg_depletion)
            gap_l = [gap]
            if rng.random() < cfg.repeat_probability:
                rseq, rtype, rname, rstrand = _repeat_copy(rng, cfg, families)
                at = int(rng.integers(200, max(201, len(gap) - 200)))
                gap_l = [gap[:at], rseq, gap[at:]]
                rep_no += 1
                rows.append(dict(chrom=chrom, start=pos + at + 1, end=pos + at + len(rseq), type=rtype,
                                 strand=rstrand, id=f"rep{rep_no}", parent="", name=rname, phase="."))
            gap = "".join(gap_l)
            if pos + len(gap) + 4000 > cfg.contig_length:
                tail = _background(rng, max(cfg.contig_length - pos, 0), cfg.gc, cfg.cpg_depletion)
                parts.append(tail)
                pos += len(tail)
                break
            parts.append(gap)
            pos += len(gap)
            gene_no += 1
            gid = f"SG{gene_no:04d}"
            gseq, ann, model = _make_gene(rng, cfg, usage, domains, gid)
            strand = "+" if rng.random() < 0.5 else "-"
            glen = len(gseq)
            if strand == "-":
                gseq = reverse_complement(gseq)

            def g2c(s: int, e: int, off=pos, glen=glen, strand=strand) -> tuple[int, int]:
                """Local half-open -> 1-based inclusive contig coordinates."""
                if strand == "+":
                    return off + s + 1, off + e
                return off + (glen - e) + 1, off + (glen - s)

            parts.append(gseq)
            rows.extend(_gene_rows(chrom, gid, strand, model, ann, g2c))
            genes.append(_model_to_genome(chrom, strand, model, g2c))
            pos += glen
        contigs[chrom] = "".join(parts)
    elements = pd.DataFrame(rows, columns=["chrom", "start", "end", "type", "strand", "id", "parent",
                                           "name", "phase"])
    order = {c: i for i, c in enumerate(contigs)}
    elements = (elements.assign(_c=elements["chrom"].map(order))
                .sort_values(["_c", "start", "end", "type"], kind="stable").drop(columns="_c")
                .reset_index(drop=True))
    return SynthGenome(cfg, contigs, elements, genes, usage)


def _gene_rows(chrom, gid, strand, model, ann, g2c) -> list[dict]:
    rows = []
    tx = f"{gid}.t1"

    def add(t, s, e, id_="", parent=tx, name="", phase="."):
        a, b_ = g2c(s, e)
        rows.append(dict(chrom=chrom, start=a, end=b_, type=t, strand=strand, id=id_, parent=parent,
                         name=name, phase=phase))

    add("gene", model["tss"], model["end"], id_=gid, parent="", name=gid)
    add("mRNA", model["tss"], model["end"], id_=tx, parent=gid, name=tx)
    for t, s, e, attrs in ann:
        name = attrs.get("Name", "")
        if t == "TF_binding_site" and attrs.get("motif_strand"):
            # motif orientation relative to the genome
            ms = attrs["motif_strand"]
            name = f"{name}({ms if strand == '+' else ('-' if ms == '+' else '+')})"
        add(t, s, e, parent=gid if t in ("promoter", "TF_binding_site", "TATA_box", "CpG_island") else tx,
            name=name)
    for k, (s, e) in enumerate(model["exons"]):
        add("exon", s, e, id_=f"{tx}.exon{k + 1}")
    done = 0
    for s, e in model["cds"]:
        add("CDS", s, e, id_=f"{tx}.cds", phase=str((3 - done % 3) % 3))
        done += e - s
    add("five_prime_UTR", *model["utr5"])
    add("three_prime_UTR", *model["utr3"])
    c0 = model["cds"][0][0]
    add("start_codon", c0, c0 + 3)
    c1 = model["cds"][-1][1]
    add("stop_codon", c1 - 3, c1)
    for k, it in enumerate(model["introns"]):
        add("intron", it["start"], it["end"], id_=f"{tx}.intron{k + 1}")
        add("five_prime_cis_splice_site", it["start"], it["start"] + 6, name="donor")
        add("three_prime_cis_splice_site", it["end"] - 3, it["end"], name="acceptor")
        add("branch_site", *it["branch"])
        add("polypyrimidine_tract", *it["ppt"])
    # domains: map codon spans to genomic pieces of the CDS
    for fam, cs, ce in model["domains"]:
        for s, e in _cds_span_to_local(model["cds"], 3 * cs, 3 * ce):
            add("polypeptide_domain", s, e, parent=tx, name=fam)
    return rows


def _cds_span_to_local(cds_intervals, a: int, b: int) -> list[tuple[int, int]]:
    """CDS offsets [a, b) -> local half-open pieces."""
    out, done = [], 0
    for s, e in cds_intervals:
        n = e - s
        lo, hi = max(a, done), min(b, done + n)
        if lo < hi:
            out.append((s + lo - done, s + hi - done))
        done += n
    return out


def _model_to_genome(chrom, strand, model, g2c) -> dict:
    """Gene model in genome coordinates; CDS positions listed in transcript order (1-based)."""
    cds_pos: list[int] = []
    for s, e in model["cds"]:
        a, b_ = g2c(s, e)
        cds_pos.extend(range(a, b_ + 1) if strand == "+" else range(b_, a - 1, -1))
    dom = np.zeros(len(cds_pos) // 3, dtype=bool)
    for _, cs, ce in model["domains"]:
        dom[cs:ce] = True
    introns = []
    for it in model["introns"]:
        introns.append({"span": g2c(it["start"], it["end"]), "branch": g2c(*it["branch"]),
                        "ppt": g2c(*it["ppt"])})
    return {"id": model["id"], "chrom": chrom, "strand": strand, "span": g2c(0, model["end"]),
            "cds_pos": cds_pos, "domain_codon": dom, "introns": introns, "cds_seq": model["cds_seq"],
            "protein": model["protein"]}


# --------------------------------------------------------------------------- output
GFF_SOURCE = "biointerp.synth"


def write_genome(genome: SynthGenome, out_dir: str | Path, prefix: str = "genome") -> dict[str, Path]:
    """Write ``<prefix>.fa`` (+ ``.fai``), ``elements.gff3``, ``elements.bed`` and ``codon_usage.tsv``."""
    import pysam

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fa = out / f"{prefix}.fa"
    with open(fa, "w") as fh:
        for name, seq in genome.contigs.items():
            fh.write(f">{name}\n")
            for i in range(0, len(seq), 80):
                fh.write(seq[i:i + 80] + "\n")
    pysam.faidx(str(fa))
    el = genome.elements
    gff = out / "elements.gff3"
    with open(gff, "w") as fh:
        fh.write("##gff-version 3\n")
        for name, seq in genome.contigs.items():
            fh.write(f"##sequence-region {name} 1 {len(seq)}\n")
        for r in el.itertuples(index=False):
            attrs = []
            if r.id:
                attrs.append(f"ID={r.id}")
            if r.parent:
                attrs.append(f"Parent={r.parent}")
            if r.name:
                attrs.append(f"Name={r.name}")
            fh.write(f"{r.chrom}\t{GFF_SOURCE}\t{r.type}\t{r.start}\t{r.end}\t.\t{r.strand}\t{r.phase}\t"
                     f"{';'.join(attrs) or '.'}\n")
    bed = out / "elements.bed"
    label = np.where(el["name"].astype(bool), el["type"] + ":" + el["name"], el["type"])
    pd.DataFrame({"chrom": el["chrom"], "start": el["start"] - 1, "end": el["end"], "name": label,
                  "score": 0, "strand": el["strand"]}).to_csv(bed, sep="\t", header=False, index=False)
    cu = out / "codon_usage.tsv"
    pd.DataFrame([(aa, c, round(f, 6)) for aa, d in genome.codon_usage.items() for c, f in d.items()],
                 columns=["aa", "codon", "fraction"]).to_csv(cu, sep="\t", index=False)
    return {"fasta": fa, "fai": Path(str(fa) + ".fai"), "gff3": gff, "bed": bed, "codon_usage": cu}


def read_elements(gff3: str | Path) -> pd.DataFrame:
    """Read an ``elements.gff3`` written by :func:`write_genome` into the element table."""
    cols = ["chrom", "source", "type", "start", "end", "score", "strand", "phase", "attrs"]
    df = pd.read_csv(gff3, sep="\t", comment="#", header=None, names=cols, dtype={"chrom": str})
    kv = df["attrs"].fillna(".").map(lambda a: dict(x.split("=", 1) for x in a.split(";") if "=" in x))
    for k, col in (("ID", "id"), ("Parent", "parent"), ("Name", "name")):
        df[col] = kv.map(lambda d, k=k: d.get(k, ""))
    return df[["chrom", "start", "end", "type", "strand", "id", "parent", "name", "phase"]]


def position_labels(elements: pd.DataFrame, chrom: str, length: int,
                    classes: dict[str, tuple[str, ...]] | None = None) -> dict[str, np.ndarray]:
    """Per-position boolean masks (0-based index) of planted element classes on one contig."""
    classes = classes or POSITION_CLASSES
    el = elements[elements["chrom"] == chrom]
    out = {}
    for cls, types in classes.items():
        m = np.zeros(length, dtype=bool)
        for r in el[el["type"].isin(types)].itertuples(index=False):
            m[r.start - 1:r.end] = True
        out[cls] = m
    return out


# --------------------------------------------------------------------------- variants
def normalize_indel(seq: str, pos: int, ref: str, alt: str) -> tuple[int, str, str]:
    """Left-align and trim a VCF-style allele pair on ``seq`` (``pos`` 1-based)."""
    while len(ref) > 0 and len(alt) > 0 and ref[-1] == alt[-1] and (len(ref) > 1 or len(alt) > 1):
        ref, alt = ref[:-1], alt[:-1]
        if (not ref or not alt) and pos > 1:
            pos -= 1
            ref, alt = seq[pos - 1] + ref, seq[pos - 1] + alt
    while len(ref) > 1 and len(alt) > 1 and ref[0] == alt[0]:
        ref, alt, pos = ref[1:], alt[1:], pos + 1
    return pos, ref, alt


def _other_base(rng, b: str) -> str:
    return BASES[(BASES.index(b) + int(rng.integers(1, 4))) % 4]


def novel_contigs(genome: SynthGenome) -> list[str]:
    """The contigs whose domain families no other contig shares (``novel_family_contigs``)."""
    return list(genome.contigs)[genome.config.n_contigs:]


def make_variants(genome: SynthGenome, per_class: int | None = None, seed: int | None = None,
                  test_contigs: tuple[str, ...] | None = None) -> pd.DataFrame:
    """Draw a labelled variant set whose labels follow the planted biology.

    Returns one row per variant: ``variant_id, chrom, pos, ref, alt, gene,
    consequence, label, split`` (``split`` = ``test`` on ``test_contigs``,
    by default the last contig, else ``train``), sorted by contig and position.
    At most ``per_class`` variants per contig and consequence class
    (``config.test_variants_per_class`` on the test contigs, when set; the test
    contig comes last, so the training variants do not change with it).
    With novel-family contigs the default test contigs are the last ordinary
    contig (domain families shared with training) and the novel ones, and a
    ``families`` column says ``shared`` or ``novel`` (the variants of the ordinary
    contigs are the same as without them).
    """
    cfg = genome.config
    per_class = per_class or cfg.variants_per_class
    test_per_class = getattr(cfg, "test_variants_per_class", None) or per_class
    rng = np.random.default_rng((cfg.seed if seed is None else seed) + 1_000_003)
    names = list(genome.contigs)
    novel = novel_contigs(genome)
    ordinary = names[:len(names) - len(novel)]
    test_contigs = tuple(test_contigs) if test_contigs is not None else tuple(ordinary[-1:]) + tuple(novel)
    el = genome.elements
    rows: list[tuple] = []

    train_per_class = per_class
    for chrom in names:
        per_class = test_per_class if chrom in test_contigs else train_per_class
        seq = genome.contigs[chrom]
        cand: dict[str, list[tuple]] = {k: [] for k in CONSEQUENCE_LABELS}
        genes = [g for g in genome.genes if g["chrom"] == chrom]
        genic = np.zeros(len(seq) + 2, dtype=bool)
        for g in genes:
            a, b_ = g["span"]
            genic[max(a - 700, 1):b_ + 200] = True  # gene + promoter + flank
        for g in genes:
            _gene_candidates(rng, seq, g, cand)
        sub = el[(el["chrom"] == chrom) & el["type"].isin(["TF_binding_site", "TATA_box"])]
        for r in sub.itertuples(index=False):
            gene = r.parent
            for p in range(r.start, r.end + 1):
                cand["motif_disruption"].append((p, seq[p - 1], _other_base(rng, seq[p - 1]), gene))
        inter = np.flatnonzero(~genic[1:len(seq) + 1]) + 1
        if inter.size:
            for p in rng.choice(inter, size=min(per_class * 3, inter.size), replace=False):
                p = int(p)
                cand["intergenic"].append((p, seq[p - 1], _other_base(rng, seq[p - 1]), ""))
                if p > 1 and p + 5 < len(seq):
                    cand["intergenic_indel"].append(_random_indel(rng, seq, p, "", max_len=4))
        for cls, lst in cand.items():
            lst = [v for v in lst if v is not None]
            if not lst:
                continue
            take = rng.choice(len(lst), size=min(per_class, len(lst)), replace=False)
            for i in sorted(int(t) for t in take):
                p, ref, alt, gene = lst[i]
                if len(ref) != 1 or len(alt) != 1:
                    p, ref, alt = normalize_indel(seq, p, ref, alt)
                rows.append((chrom, p, ref, alt, gene, cls, CONSEQUENCE_LABELS[cls],
                             "test" if chrom in test_contigs else "train"))
    df = pd.DataFrame(rows, columns=["chrom", "pos", "ref", "alt", "gene", "consequence", "label", "split"])
    df.insert(0, "variant_id", df["chrom"] + ":" + df["pos"].astype(str) + ":" + df["ref"] + ":" + df["alt"])
    if novel:
        df["families"] = np.where(df["chrom"].isin(novel), "novel", "shared")
    order = {c: i for i, c in enumerate(names)}
    df = (df.drop_duplicates("variant_id").assign(_c=df["chrom"].map(order))
          .sort_values(["_c", "pos", "ref", "alt"], kind="stable").drop(columns="_c").reset_index(drop=True))
    return df


def _random_indel(rng, seq: str, p: int, gene: str, max_len: int = 4, frame: int | None = None,
                  deletion: bool | None = None) -> tuple | None:
    """An indel right after 1-based position ``p`` (VCF-anchored at ``p``)."""
    n = int(rng.integers(1, max_len + 1)) if frame is None else frame
    if deletion is None:
        deletion = rng.random() < 0.6
    if deletion:
        if p + n > len(seq):
            return None
        return (p, seq[p - 1:p + n], seq[p - 1], gene)
    ins = "".join(rng.choice(list(BASES), size=n))
    return (p, seq[p - 1], seq[p - 1] + ins, gene)


def _gene_candidates(rng, seq: str, g: dict, cand: dict) -> None:
    strand = g["strand"]
    gid = g["id"]

    def tx_base(p: int) -> str:
        b = seq[p - 1]
        return b if strand == "+" else b.translate(_COMP)

    def to_genome(b: str) -> str:
        return b if strand == "+" else b.translate(_COMP)

    cds_pos = g["cds_pos"]
    n_codons = len(cds_pos) // 3
    # SNVs in codons
    for ci in range(n_codons):
        ps = cds_pos[3 * ci:3 * ci + 3]
        codon = "".join(tx_base(p) for p in ps)
        aa = GENETIC_CODE[codon]
        for k in range(3):
            alt_b = BASES[int(rng.integers(4))]
            if alt_b == codon[k]:
                continue
            new = codon[:k] + alt_b + codon[k + 1:]
            aa2 = GENETIC_CODE[new]
            v = (ps[k], seq[ps[k] - 1], to_genome(alt_b), gid)
            if ci == 0:
                cand["start_lost"].append(v)
            elif ci == n_codons - 1:
                if aa2 != "*":
                    cand["stop_lost"].append(v)
            elif aa2 == "*":
                cand["nonsense"].append(v)
            elif aa2 == aa:
                cand["synonymous"].append(v)
            elif g["domain_codon"][ci]:
                cand["missense_domain"].append(v)
            else:
                cand["missense_outside_domain"].append(v)
    # frameshifts and in-frame deletions inside domains (whole codons, + strand anchor)
    for _ in range(6):
        ci = int(rng.integers(2, n_codons - 2))
        ps = sorted(cds_pos[3 * ci:3 * ci + 3])
        cand["frameshift"].append(_random_indel(rng, seq, ps[0], gid, frame=int(rng.integers(1, 3))))
    dom_idx = np.flatnonzero(g["domain_codon"])
    for ci in rng.choice(dom_idx, size=min(4, dom_idx.size), replace=False) if dom_idx.size else []:
        ps = sorted(cds_pos[3 * int(ci):3 * int(ci) + 3])
        if ps[-1] - ps[0] == 2:  # codon not split by an intron
            cand["inframe_deletion_domain"].append((ps[0] - 1, seq[ps[0] - 2:ps[-1]], seq[ps[0] - 2], gid))
    for it in g["introns"]:
        a, b_ = it["span"]
        # donor GT / acceptor AG dinucleotides in genome coordinates
        if strand == "+":
            donor, acceptor = (a, a + 1), (b_ - 1, b_)
        else:
            donor, acceptor = (b_ - 1, b_), (a, a + 1)
        for p in donor:
            cand["splice_donor"].append((p, seq[p - 1], _other_base(rng, seq[p - 1]), gid))
        for p in acceptor:
            cand["splice_acceptor"].append((p, seq[p - 1], _other_base(rng, seq[p - 1]), gid))
        lo, hi = a + 50, b_ - 60  # deep: >= 50 bp from either end, clear of branch point / PPT
        bp_lo = min(it["branch"][0], it["ppt"][0]) - 10
        bp_hi = max(it["branch"][1], it["ppt"][1]) + 10
        if hi > lo:
            for p in rng.choice(np.arange(lo, hi + 1), size=min(3, hi - lo + 1), replace=False):
                p = int(p)
                if bp_lo <= p <= bp_hi:
                    continue
                cand["deep_intronic"].append((p, seq[p - 1], _other_base(rng, seq[p - 1]), gid))
                if p + 5 < hi and not (bp_lo <= p + 5 and p <= bp_hi):
                    cand["deep_intronic_indel"].append(_random_indel(rng, seq, p, gid, max_len=4))


def write_variants(variants: pd.DataFrame, contigs: dict[str, str], out_dir: str | Path,
                   prefix: str = "variants") -> dict[str, Path]:
    """Write ``<prefix>.vcf.gz`` (bgzip + tabix, INFO GENE/CSQ/LABEL/SPLIT) and ``<prefix>.tsv``."""
    import pysam

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tsv = out / f"{prefix}.tsv"
    variants.to_csv(tsv, sep="\t", index=False)
    vcf = out / f"{prefix}.vcf"
    with open(vcf, "w") as fh:
        fh.write("##fileformat=VCFv4.2\n##source=biointerp.synth\n")
        for name, seq in contigs.items():
            fh.write(f"##contig=<ID={name},length={len(seq)}>\n")
        fh.write('##INFO=<ID=GENE,Number=1,Type=String,Description="Synthetic gene id">\n'
                 '##INFO=<ID=CSQ,Number=1,Type=String,Description="Planted consequence class">\n'
                 '##INFO=<ID=LABEL,Number=1,Type=String,Description="damaging or neutral">\n'
                 '##INFO=<ID=SPLIT,Number=1,Type=String,Description="train or test">\n'
                 "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n")
        for r in variants.itertuples(index=False):
            info = f"CSQ={r.consequence};LABEL={r.label};SPLIT={r.split}"
            if r.gene:
                info = f"GENE={r.gene};" + info
            fh.write(f"{r.chrom}\t{r.pos}\t{r.variant_id}\t{r.ref}\t{r.alt}\t.\tPASS\t{info}\n")
    gz = Path(str(vcf) + ".gz")
    pysam.tabix_compress(str(vcf), str(gz), force=True)
    pysam.tabix_index(str(gz), preset="vcf", force=True)
    vcf.unlink()
    return {"vcf": gz, "tbi": Path(str(gz) + ".tbi"), "tsv": tsv}


# --------------------------------------------------------------------------- methylation cohort
def make_methylation_cohort(contigs: dict[str, str], elements: pd.DataFrame, n_cases: int = 40,
                            n_controls: int = 40, n_cpgs: int = 1000, n_dmr_islands: int = 5,
                            effect: float = 0.35, missing_rate: float = 0.0, seed: int = 0
                            ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Simulate CpG beta values for cases and controls.

    Island CpGs are mostly unmethylated (beta ~ 0.1), background CpGs mostly
    methylated (~ 0.8); in cases the CpGs of ``n_dmr_islands`` chosen islands
    gain ``effect`` in mean beta (a sample of at most a quarter of the island
    CpG budget per DMR island is reported). Returns ``(beta, samples, cpgs)``: beta has
    CpG rows (index ``cpg`` = ``chrom:pos``, 1-based C of the CpG) x sample
    columns, as in the TCGA table of ``../shared/data/cohorts``; samples has
    ``sample, condition`` (case/control); cpgs has ``cpg, chrom, pos,
    island, dmr, delta``.
    """
    rng = np.random.default_rng(seed + 7_919)
    islands = elements[elements["type"] == "CpG_island"]
    site_rows = []
    for chrom, seq in contigs.items():
        arr = np.frombuffer(seq.encode(), dtype=np.uint8)
        pos = np.flatnonzero((arr[:-1] == ord("C")) & (arr[1:] == ord("G"))) + 1
        isl = np.zeros(len(seq) + 1, dtype=np.int64) - 1
        for i, r in islands[islands["chrom"] == chrom].iterrows():
            isl[r.start:r.end + 1] = i
        for p in pos:
            site_rows.append((chrom, int(p), int(isl[p])))
    sites = pd.DataFrame(site_rows, columns=["chrom", "pos", "island_row"])
    if sites.empty:
        raise ValueError("the genome has no CpG sites")
    in_isl = sites[sites["island_row"] >= 0]
    out_isl = sites[sites["island_row"] < 0]
    n_isl = min(len(in_isl), n_cpgs // 2)
    isl_ids = in_isl["island_row"].unique()
    dmr_ids = set(rng.choice(isl_ids, size=min(n_dmr_islands, isl_ids.size), replace=False).tolist()) \
        if isl_ids.size else set()
    # keep every CpG of the DMR islands, fill up with other island and background CpGs
    dmr_sites = in_isl[in_isl["island_row"].isin(dmr_ids)]
    # at most ~a quarter of the island budget per DMR island, so other islands are represented too
    cap = max(3, n_isl // (4 * max(1, len(dmr_ids))))
    dmr_sites = pd.concat([grp.iloc[np.sort(rng.choice(len(grp), size=min(cap, len(grp)), replace=False))]
                           for _, grp in dmr_sites.groupby("island_row")]) if len(dmr_sites) else dmr_sites
    other = in_isl[~in_isl["island_row"].isin(dmr_ids)]
    pick_isl = other.iloc[np.sort(rng.choice(len(other), size=max(min(n_isl - len(dmr_sites), len(other)), 0),
                                             replace=False))]
    n_bg = max(n_cpgs - len(dmr_sites) - len(pick_isl), 0)
    pick_bg = out_isl.iloc[np.sort(rng.choice(len(out_isl), size=min(n_bg, len(out_isl)), replace=False))]
    chosen = pd.concat([dmr_sites, pick_isl, pick_bg])
    order = {c: i for i, c in enumerate(contigs)}
    chosen = chosen.assign(_c=chosen["chrom"].map(order)).sort_values(["_c", "pos"]).drop(columns="_c")
    island = chosen["island_row"].to_numpy() >= 0
    dmr = chosen["island_row"].isin(dmr_ids).to_numpy()
    n = len(chosen)
    base = np.where(island, rng.beta(1.5, 12, n), rng.beta(8, 2, n))
    samples = [f"case{i + 1:03d}" for i in range(n_cases)] + [f"ctrl{i + 1:03d}" for i in range(n_controls)]
    cond = np.array(["case"] * n_cases + ["control"] * n_controls)
    delta = np.where(dmr, effect, 0.0)
    mean = base[:, None] + delta[:, None] * (cond == "case")[None, :]
    conc = 40.0
    m = np.clip(mean, 0.01, 0.99)
    beta = rng.beta(m * conc, (1 - m) * conc)
    if missing_rate > 0:
        beta[rng.random(beta.shape) < missing_rate] = np.nan
    ids = chosen["chrom"] + ":" + chosen["pos"].astype(str)
    beta_df = pd.DataFrame(np.round(beta, 5), index=pd.Index(ids, name="cpg"), columns=samples)
    sample_df = pd.DataFrame({"sample": samples, "condition": cond})
    cpg_df = pd.DataFrame({"cpg": ids.to_numpy(), "chrom": chosen["chrom"].to_numpy(),
                           "pos": chosen["pos"].to_numpy(), "island": island, "dmr": dmr, "delta": delta})
    return beta_df, sample_df, cpg_df


def write_cohort(beta: pd.DataFrame, samples: pd.DataFrame, cpgs: pd.DataFrame,
                 out_dir: str | Path) -> dict[str, Path]:
    """Write ``methylation_beta.tsv.gz``, ``samples.tsv`` and ``cpg_truth.tsv``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"beta": out / "methylation_beta.tsv.gz", "samples": out / "samples.tsv",
             "truth": out / "cpg_truth.tsv"}
    import gzip

    with gzip.GzipFile(paths["beta"], "wb", mtime=0) as fh:  # mtime=0: byte-identical reruns
        fh.write(beta.to_csv(sep="\t").encode())
    samples.to_csv(paths["samples"], sep="\t", index=False)
    cpgs.to_csv(paths["truth"], sep="\t", index=False)
    return paths


# --------------------------------------------------------------------------- one call
#: Named sizes: ``default`` ~3 Mb, ``demo`` ~0.8 Mb (the bundled demo model), ``tiny`` for tests.
PRESETS: dict[str, dict] = {
    "default": dict(n_contigs=4, contig_length=750_000),
    # denser in planted biology than `default` (short gaps and introns, proteins mostly made of
    # conserved domains), so a small model learns it within minutes of CPU training
    "demo": dict(n_contigs=4, contig_length=200_000, gap_range=(600, 2500), intron_range=(80, 400),
                 protein_aa_range=(150, 260), n_domain_families=6, domain_aa_range=(40, 70),
                 domains_per_gene=(2, 4)),
    "tiny": dict(n_contigs=2, contig_length=40_000, variants_per_class=8),
}


def build(out_dir: str | Path, config: SynthConfig | None = None, variants: bool = True,
          command: str | None = None, progress: bool = False) -> dict:
    """Generate and write a genome (+ variants); returns the manifest also written as manifest.json."""
    cfg = config or SynthConfig()
    genome = generate_genome(cfg, progress=progress)
    paths = write_genome(genome, out_dir)
    n_var = 0
    if variants:
        v = make_variants(genome)
        paths.update(write_variants(v, genome.contigs, out_dir))
        n_var = len(v)
    manifest = {
        "generator": "biointerp.synth", "config": cfg.to_dict(), "command": command,
        "contigs": {k: len(s) for k, s in genome.contigs.items()},
        "n_genes": len(genome.genes), "n_elements": int(len(genome.elements)), "n_variants": n_var,
        "files": {k: Path(p).name for k, p in paths.items()},
        "sha256": {Path(p).name: _sha256(p) for k, p in paths.items() if k in ("fasta", "gff3", "tsv")},
    }
    Path(out_dir, "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------- ground-truth evaluation
def _auroc(y: np.ndarray, s: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    ok = np.isfinite(s)
    y, s = np.asarray(y)[ok], np.asarray(s)[ok]
    if len(np.unique(y)) < 2:
        return float("nan")
    return float(roc_auc_score(y, s))


def _with_ci(y: np.ndarray, s: np.ndarray, n_boot: int, seed: int = 0) -> dict:
    """AUROC with a percentile bootstrap 95% CI (``auroc_lo``/``auroc_hi`` NaN when ``n_boot`` is 0)."""
    from biointerp.probes.evaluate import evaluate

    r = evaluate(y, s, n_boot=n_boot, seed=seed)
    return {"auroc": r["auroc"], "auroc_lo": r["auroc_ci"][0], "auroc_hi": r["auroc_ci"][1]}


def zero_shot_eval(model, fasta: str | Path, variants: pd.DataFrame, window: int = 512,
                   strand: str = "both", batch_size: int = 8, progress: bool = False, n_boot: int = 0,
                   scores: pd.DataFrame | None = None) -> tuple[pd.DataFrame, dict]:
    """Δ log-likelihood (``biointerp.scoring.score_variants``) of labelled variants and its AUROC.

    The score is ``-delta_ll`` (damaging variants should lose likelihood).
    Returns ``(scores, metrics)``; metrics: ``overall`` AUROC damaging vs
    neutral and ``per_class``: each damaging class vs all neutral variants,
    each neutral class vs all damaging variants (always oriented so that 0.5
    is chance and 1 is perfect). With ``n_boot``: 95% bootstrap CIs
    (``overall_ci``, per class ``auroc_lo``/``auroc_hi``). ``scores``: already
    computed ``delta_ll`` (a previous call's first return value) to re-evaluate.
    """
    from biointerp.genome import Genome
    from biointerp.scoring import score_variants

    df = variants.reset_index(drop=True).copy()
    if scores is None:
        res = score_variants(model, Genome(str(fasta)), variants, window=window, reduce="mean", strand=strand,
                             batch_size=batch_size, progress=progress)
        df["delta_ll"] = res["delta_ll"].to_numpy()
    else:
        df["delta_ll"] = scores.set_index("variant_id")["delta_ll"].reindex(df["variant_id"]).to_numpy()
    y = (df["label"] == "damaging").to_numpy().astype(int)
    s = -df["delta_ll"].to_numpy()
    per = {}
    for cls, sub in df.groupby("consequence"):
        lab = CONSEQUENCE_LABELS.get(cls)
        other = df[df["label"] != lab]
        both = pd.concat([sub, other])
        yy = (both["label"] == "damaging").to_numpy().astype(int)
        per[cls] = {"auroc": _auroc(yy, -both["delta_ll"].to_numpy()), "n": int(len(sub)), "label": lab}
        if n_boot:
            per[cls].update({k: v for k, v in _with_ci(yy, -both["delta_ll"].to_numpy(), n_boot).items()
                             if k != "auroc"})
    out = {"overall": _auroc(y, s), "n": int(len(df)), "n_damaging": int(y.sum()), "per_class": per}
    if n_boot:
        ci = _with_ci(y, s, n_boot)
        out["overall_ci"] = [ci["auroc_lo"], ci["auroc_hi"]]
    return df, out


def _block_bootstrap_ci(y: np.ndarray, s: np.ndarray, n_boot: int, block: int = 500, seed: int = 0
                        ) -> tuple[float, float]:
    """95% CI of AUROC resampling blocks of ``block`` consecutive positions (neighbouring positions
    are not independent: a per-position bootstrap would give far too narrow intervals)."""
    from biointerp.probes.evaluate import auroc

    rng = np.random.default_rng(seed)
    starts = np.arange(0, len(y), block)
    vals = []
    for _ in range(n_boot):
        pick = rng.choice(starts, size=len(starts), replace=True)
        idx = np.concatenate([np.arange(a, min(a + block, len(y))) for a in pick])
        vals.append(auroc(y[idx], s[idx]))
    v = np.asarray(vals)
    v = v[np.isfinite(v)]
    return (float(np.quantile(v, 0.025)), float(np.quantile(v, 0.975))) if len(v) else (np.nan, np.nan)


def _gene_windows(genome_len: int, spans: list[tuple[int, int]], window: int) -> list[tuple[int, int, int]]:
    """(start0, keep_from, keep_to) windows tiling each span; positions kept have >= window/2 context."""
    out = []
    half = window // 2
    for a, b in spans:  # 1-based inclusive spans
        lo = max(0, a - 1 - half)
        s = lo
        while True:
            s0 = min(s, max(0, genome_len - window))
            keep_from = 0 if s0 == 0 else half
            out.append((s0, keep_from, window))
            if s0 + window >= min(genome_len, b):
                break
            s += half
    return out


def position_features(model, contigs: dict[str, str], elements: pd.DataFrame, chroms: list[str], layer: str,
                      window: int = 512, max_genes: int | None = None, batch_size: int = 8, seed: int = 0,
                      progress: bool = False) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Activations of ``layer`` at positions tiling gene regions (promoter to 3' end) of ``chroms``.

    Returns ``(X [N, d] float32, labels {class: bool[N]})`` with the
    :data:`POSITION_CLASSES` of every position; each position has at least
    ``window/2`` bases of left context (except at contig starts) and appears once.
    """
    import torch
    from tqdm.auto import tqdm

    rng = np.random.default_rng(seed)
    feats, labs = [], {c: [] for c in POSITION_CLASSES}
    jobs = []
    for chrom in chroms:
        seq = contigs[chrom]
        genes = elements[(elements["chrom"] == chrom) & (elements["type"] == "gene")]
        if max_genes is not None and len(genes) > max_genes:
            genes = genes.iloc[np.sort(rng.choice(len(genes), size=max_genes, replace=False))]
        spans = [(max(1, int(r.start) - 700), min(len(seq), int(r.end) + 200)) for r in genes.itertuples()]
        masks = position_labels(elements, chrom, len(seq))
        seen = np.zeros(len(seq), dtype=bool)
        for s0, kf, kt in _gene_windows(len(seq), spans, window):
            idx = np.arange(s0 + kf, min(s0 + kt, len(seq)))
            idx = idx[~seen[idx]]
            if idx.size == 0:
                continue
            seen[idx] = True
            jobs.append((seq[s0:s0 + window], idx - s0))
            for c in POSITION_CLASSES:
                labs[c].append(masks[c][idx])
    for i in tqdm(range(0, len(jobs), batch_size), desc=f"activations {layer}", disable=not progress):
        chunk = jobs[i:i + batch_size]
        ids, _ = model.tokenize([j[0] for j in chunk])
        with torch.inference_mode():
            acts = model.forward(ids, layers=[layer]).activations[layer].float().cpu().numpy()
        for (_, keep), a in zip(chunk, acts):
            feats.append(a[keep])
    X = np.concatenate(feats).astype(np.float32)
    return X, {c: np.concatenate(v) for c, v in labs.items()}


def probe_eval(model, contigs: dict[str, str], elements: pd.DataFrame, train_chroms: list[str],
               test_chroms: list[str], layer: str, window: int = 512, max_genes: int | None = None,
               max_train: int = 20_000, seed: int = 0, progress: bool = False, n_boot: int = 0,
               extra_tests: dict[str, list[str]] | None = None) -> dict:
    """Per-position linear-probe AUROC for each planted element class (train and test contigs disjoint).

    One logistic regression (standardised features, balanced class weights)
    per class, trained on positions of ``train_chroms`` and scored on
    ``test_chroms``. Returns ``{class: {"auroc", "n_pos", "n_test"}}`` plus ``mean``;
    with ``n_boot``, ``auroc_lo``/``auroc_hi`` from a block bootstrap over runs of
    500 consecutive positions. ``extra_tests`` ``{name: chroms}``: the same probes
    scored on further test contigs, under ``out[name]`` (same layout).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    Xtr, ytr = position_features(model, contigs, elements, train_chroms, layer, window, max_genes, seed=seed,
                                 progress=progress)
    tests = {"": test_chroms, **(extra_tests or {})}
    feats = {k: position_features(model, contigs, elements, v, layer, window, max_genes, seed=seed + 1,
                                  progress=progress) for k, v in tests.items()}
    rng = np.random.default_rng(seed)
    sub = np.sort(rng.choice(len(Xtr), size=min(max_train, len(Xtr)), replace=False))
    outs: dict = {k: {} for k in tests}
    for c in POSITION_CLASSES:
        y = ytr[c][sub]
        clf = None
        if y.min() != y.max():
            clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=200, solver="newton-cholesky",
                                                                     class_weight="balanced"))
            clf.fit(Xtr[sub], y)
        for k, (Xte, yte) in feats.items():
            r = {"auroc": float("nan"), "n_pos": int(yte[c].sum()), "n_test": int(len(Xte))}
            if clf is not None:
                sc = clf.decision_function(Xte)
                r["auroc"] = _auroc(yte[c].astype(int), sc)
                if n_boot:
                    r["auroc_lo"], r["auroc_hi"] = _block_bootstrap_ci(yte[c].astype(int), sc, n_boot, seed=seed)
            outs[k][c] = r
    for k in outs:
        outs[k]["mean"] = float(np.nanmean([outs[k][c]["auroc"] for c in POSITION_CLASSES]))
    out = outs.pop("")
    out.update(outs)
    return out


def middle_layer(model) -> str:
    """``blocks.N`` with N = num_layers // 2 (the residual stream half-way up)."""
    return f"blocks.{int(model.config.num_layers) // 2}"


def run_ground_truth(model_spec: str = "demo", work_dir: str | Path | None = None, per_class: int | None = None,
                     window: int = 512, probe_window: int = 512, max_genes: int | None = None,
                     layer: str | None = None, seed: int = 0, progress: bool = False, novel: bool = False,
                     n_boot: int = 0) -> dict:
    """Ground-truth benchmark of a model trained on a ``biointerp.synth`` genome vs its random-init control.

    Regenerates the training genome from the model card (checking its
    SHA-256), then on the held-out ``test`` contig(s) reports (a) zero-shot
    Δ log-likelihood AUROC damaging vs neutral, overall and per class, and
    (b) per-position linear-probe AUROC of planted element classes from
    ``layer`` (default: the middle block; probes trained on the last training
    contig), for (c) the model and a randomly initialised model of the same
    config and seed. Returns ``{"model": {...}, "control": {...}, "setup": {...}}``.

    ``novel=True`` adds a contig generated with its own protein-domain families (none
    shared with the training contigs; :attr:`SynthConfig.novel_family_contigs`): the
    held-out contig above tests recognition of families the model saw in training,
    the novel one generalisation; its figures are under ``zero_shot_novel`` and
    ``probe_novel``. ``n_boot``: 95% bootstrap CIs (variants: per row; positions:
    blocks of 500 bp).
    """
    import tempfile

    from biointerp.models import StripedHyenaModel, load_model, random_model

    model = load_model(model_spec)
    card = getattr(model, "card", {}) or {}
    files = card.get("data", {}).get("files", [])
    if not files or not files[0].get("synth"):
        raise ValueError(f"{model_spec}: the model card names no biointerp.synth training genome")
    scfg = SynthConfig(**{k: tuple(v) if isinstance(v, list) else v
                          for k, v in files[0]["synth"]["config"].items()})
    tmp = tempfile.TemporaryDirectory() if work_dir is None else None
    wd = Path(work_dir or tmp.name)
    try:
        genome = generate_genome(scfg)
        paths = write_genome(genome, wd)
        if _sha256(paths["fasta"]) != files[0]["sha256"]:
            raise ValueError("regenerated genome differs from the one in the model card (generator changed?)")
        excluded = list(card.get("data", {}).get("excluded_contigs", []))
        test_contigs = tuple(excluded) or tuple(list(genome.contigs)[-1:])
        train_contigs = [c for c in genome.contigs if c not in test_contigs]
        new_contigs: list[str] = []
        if novel:
            from dataclasses import replace

            genome_n = generate_genome(replace(scfg, novel_family_contigs=1))
            assert all(genome_n.contigs[c] == genome.contigs[c] for c in genome.contigs)
            new_contigs = novel_contigs(genome_n)
            genome = genome_n
            paths = write_genome(genome, wd / "with_novel")
        variants = make_variants(genome, test_contigs=test_contigs + tuple(new_contigs))
        variants = variants[variants["split"] == "test"]
        if per_class is not None:
            variants = variants.groupby(["chrom", "consequence"], sort=False).head(per_class)
        variants = variants.reset_index(drop=True)
        control = StripedHyenaModel(random_model(model.config, seed=int(card.get("train_config", {}).get("seed", 0))),
                                    name="random-init control")
        layer = layer or middle_layer(model)
        shared = variants[variants["chrom"].isin(test_contigs)].reset_index(drop=True)
        out: dict = {"setup": {"model": model_spec, "layer": layer, "window": window, "probe_window": probe_window,
                               "test_contigs": list(test_contigs), "probe_train_contig": train_contigs[-1],
                               "n_variants": int(len(shared)), "max_genes": max_genes, "synth_seed": scfg.seed,
                               "n_boot": n_boot}}
        if novel:
            out["setup"].update(novel_contigs=new_contigs,
                                n_variants_novel=int(variants["chrom"].isin(new_contigs).sum()))
        for name, m in (("model", model), ("control", control)):
            scored, _ = zero_shot_eval(m, paths["fasta"], variants, window=window, progress=progress)
            _, zs = zero_shot_eval(m, None, shared, scores=scored, n_boot=n_boot)
            pr = probe_eval(m, genome.contigs, genome.elements, train_contigs[-1:], list(test_contigs), layer,
                            window=probe_window, max_genes=max_genes, seed=seed, progress=progress, n_boot=n_boot,
                            extra_tests={"novel": new_contigs} if novel else None)
            out[name] = {"zero_shot": zs, "probe": pr}
            if novel:
                nov = variants[variants["chrom"].isin(new_contigs)].reset_index(drop=True)
                out[name]["zero_shot_novel"] = zero_shot_eval(m, None, nov, scores=scored, n_boot=n_boot)[1]
                out[name]["probe_novel"] = pr.pop("novel")
        return out
    finally:
        if tmp is not None:
            tmp.cleanup()
