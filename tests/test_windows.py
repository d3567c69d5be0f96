"""One place builds reference/variant windows: statuses come from the reference error itself,
the two variant-window shapes, odd scoring windows refused, no genome <-> variants import loop."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest
from click.testing import CliRunner

from biointerp.cli import main
from biointerp.genome import Genome, GenomeError, contig_aliases
from biointerp.scoring import score_variants
from biointerp.windows import centred_bounds, prepare_variants


@pytest.fixture(scope="module")
def genome(brca1_fasta):
    return Genome(brca1_fasta)


def test_statuses_and_window_shapes(genome):
    p = 41245003
    b = genome.fetch("chr17", p, p + 3)
    other = next(c for c in "ACGT" if c != b[0])
    v = pd.DataFrame([("chr17", p, b[:3], b[0]), ("17", p, b[0], other), ("chr5", p, "A", "G"),
                      ("chr17", 41300000 + 5, "A", "G"), ("chr17", p, other, b[0]), ("chr17", p, "A", "<DEL>"),
                      ("chr17", p, b[0], other)], columns=["chrom", "pos", "ref", "alt"])
    v["status"] = ["ok"] * 6 + ["duplicate"]
    splice = prepare_variants(genome, v, 40, 20)
    assert [x.status for x in splice] == ["ok", "ok", "unknown_contig", "out_of_bounds", "ref_mismatch",
                                          "invalid_allele", "duplicate"]
    assert "chr5" in splice[2].status_detail and "disagrees" in splice[4].status_detail
    d = splice[0]  # a 2-bp deletion: the spliced variant window is 2 bp shorter
    assert len(d.ref_seq) == 60 and len(d.alt_seq) == 58 and d.offset == 40
    assert d.alt_seq == d.ref_seq[:40] + b[0] + d.ref_seq[43:]
    same = prepare_variants(genome, v.iloc[:1], 40, 20, variant_window="same_length")[0]
    assert len(same.alt_seq) == 60 and same.alt_seq[:58] == d.alt_seq
    with pytest.raises(ValueError, match="variant_window"):
        prepare_variants(genome, v, 40, 20, variant_window="pad")
    with pytest.raises(GenomeError) as err:
        genome.window("chrUn", 5, 2, 2)
    assert err.value.status == "unknown_contig"


def test_odd_windows_are_refused(genome, brca1_fasta, tmp_path):
    assert centred_bounds(8192) == (4096, 4096)
    with pytest.raises(ValueError, match="must be even.*8192 or 8194"):
        centred_bounds(8192 + 1)
    v = pd.DataFrame([("chr17", 41245003, genome.fetch("chr17", 41245003, 41245003), "A")],
                     columns=["chrom", "pos", "ref", "alt"])
    with pytest.raises(ValueError, match="must be even"):
        score_variants(None, genome, v, window=255)
    v.to_csv(tmp_path / "v.tsv", sep="\t", index=False)
    r = CliRunner().invoke(main, ["score", "--model", "demo", "--fasta", str(brca1_fasta), "--variants",
                                  str(tmp_path / "v.tsv"), "--window", "255", "--out", str(tmp_path / "s.h5ad")])
    assert r.exit_code != 0 and "must be even" in r.output and "254 or 256" in r.output


def test_contig_aliases_live_with_the_reference():
    assert contig_aliases("chr17") == ["chr17", "17"] and "MT" in contig_aliases("chrM")
    code = "import sys, biointerp.genome; print('biointerp.variants' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"  # the reference no longer imports the variant reader
