"""``biointerp.db.textfmt.to_string`` writes exactly pandas' ``to_string(index=False, max_colwidth=40)``."""

from __future__ import annotations

import random

import pandas as pd
import pytest

from biointerp.db.textfmt import to_string


def _pandas(columns, rows) -> str:
    return pd.DataFrame.from_records(rows, columns=columns).to_string(index=False, max_colwidth=40)


def _value(rng: random.Random, kind: str):
    if kind == "str":
        return rng.choice(["", "A", "ok", "pathogenic", "chr17:43045712:T:C", "x" * rng.randint(30, 60),
                           "tab\there", "new\nline", "ünïcode-变异", "  padded ", None])
    if kind == "int":
        return rng.choice([0, 1, -7, 43045712, 2**40, rng.randint(-10**9, 10**9)])
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "float":
        return rng.choice([None, float("nan"), 0.0, -0.0, 1.0, -2.5, 0.1234567891, 1e-7, -3.2e-9, 5e6, 1.5e7,
                           123456.789, 1e12, rng.uniform(-1, 1), rng.uniform(-1e3, 1e3), rng.gauss(0, 1) * 1e-5,
                           float(rng.randint(-100, 100))])
    if kind == "float_or_int":
        return rng.choice([1, 2.5, None, -3, 0.001])
    return None  # all-None column


@pytest.mark.parametrize("seed", range(300))
def test_same_text_as_pandas(seed):
    rng = random.Random(seed)
    kinds = [rng.choice(["str", "int", "bool", "float", "float", "float_or_int", "none"])
             for _ in range(rng.randint(1, 8))]
    columns = [rng.choice(["score", "variant_id", "a", "a_very_long_column_name_over_forty_characters_wide",
                           "pos", "x"]) + str(j) for j in range(len(kinds))]
    n = rng.choice([1, 1, 2, 3, 10, 50])
    rows = [tuple(_value(rng, k) for k in kinds) for _ in range(n)]
    got = to_string(columns, rows)
    if got is None:  # only for columns it says it does not format
        assert any(k == "float_or_int" for k in kinds) or any(k == "int" for k in kinds), (kinds, rows[:3])
        return
    assert got == _pandas(columns, rows)


def test_declines_what_it_does_not_format():
    assert to_string(["a"], [(float("inf"),)]) is None  # infinities
    assert to_string(["a"], [("x",), (1,)]) is None  # mixed text and numbers
    assert to_string(["a"], [([1, 2],)]) is None  # lists
    assert to_string(["a"], []) is None  # no rows: the caller prints "(no rows)"
    assert to_string(["a", "a"], [(1, 2)]) is None  # duplicate names


def test_real_query_results(tmp_path):
    """Rows of real look-ups on a built database print as pandas prints them."""
    import numpy as np

    import biointerp.db as vdb
    from biointerp.tables import make_scores_adata, write_scores

    rng = np.random.default_rng(0)
    n = 60
    var = pd.DataFrame({"chrom": "17", "pos": np.arange(1000, 1000 + n) * 7, "ref": "A", "alt": "G",
                        "status": np.where(rng.random(n) < 0.2, "ref_mismatch", "ok"), "gene": "BRCA1",
                        "rsid": [f"rs{i}" if i % 3 else None for i in range(n)],
                        "label": rng.choice(["pathogenic", "benign", "other"], n)})
    var["variant_id"] = [f"17:{p}:A:G" for p in var["pos"]]
    scores = {"delta_ll": rng.standard_normal(n).astype(np.float32), "tiny": (rng.random(n) * 1e-8).astype(np.float32),
              "big": (rng.random(n) * 1e8).astype(np.float32)}
    write_scores(make_scores_adata(var, scores), tmp_path / "s.h5ad")
    vdb.build([tmp_path / "s.h5ad"], tmp_path / "v.duckdb")
    with vdb.VariantDB(tmp_path / "v.duckdb") as db:
        results = [db.lookup("17:7000:A:G"), db.lookup("17:7007:A:G", heads=False), db.region("17:7000-7300"),
                   db.gene("BRCA1", top=5), db.rsid("rs4"), db.query_result(region="17:7000-7100", min_score=0)]
        for res in results:
            got = to_string(res.columns, res.rows)
            assert got is not None and got == _pandas(res.columns, res.rows)
