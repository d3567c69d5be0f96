from click.testing import CliRunner

from biointerp.cli import COMMANDS, main
from biointerp.variants import contig_aliases, make_variant_id, parse_variant_id
import pytest


def test_top_level_help_lists_every_command():
    res = CliRunner().invoke(main, ["--help"])
    assert res.exit_code == 0, res.output
    for name in COMMANDS:
        assert name in res.output


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_has_help(name):
    res = CliRunner().invoke(main, [name, "--help"])
    assert res.exit_code == 0, res.output
    assert "Usage" in res.output or "not yet available" in res.output


@pytest.mark.parametrize(
    "text,zero,expected",
    [
        ("chr17:43045712:T:C", False, ("chr17", 43045712, "T", "C")),
        ("chr17-43045712-T-C", False, ("chr17", 43045712, "T", "C")),
        ("17:43045712:t:c", False, ("17", 43045712, "T", "C")),
        ("17:43045711:T:C", True, ("17", 43045712, "T", "C")),
        ("MT:100:A:AG", False, ("MT", 100, "A", "AG")),
    ],
)
def test_parse_variant_id(text, zero, expected):
    assert parse_variant_id(text, zero_based=zero) == expected
    assert make_variant_id(*expected) == ":".join(map(str, expected))


@pytest.mark.parametrize("bad", ["", "chr17", "chr17:abc:T:C", "chr17:0:T:C", "x" * 500, "1;DROP TABLE v"])
def test_parse_variant_id_rejects(bad):
    with pytest.raises(ValueError):
        parse_variant_id(bad)


def test_contig_aliases():
    assert contig_aliases("chr17") == ["chr17", "17"]
    assert contig_aliases("17") == ["17", "chr17"]
    assert "MT" in contig_aliases("chrM") and "chrM" in contig_aliases("MT")
