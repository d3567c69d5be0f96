import numpy as np
import pandas as pd

from biointerp.tables import add_scores, concat_scores, make_scores_adata, read_scores, scores_frame, write_scores


def _variants():
    return pd.DataFrame({
        "variant_id": ["chr1:10:A:C", "chr1:10:A:C", "chr1:12:G:T", "chr2:5:T:<DEL>"],
        "chrom": ["chr1", "chr1", "chr1", "chr2"], "pos": [10, 10, 12, 5],
        "ref": ["A", "A", "G", "T"], "alt": ["C", "C", "T", "<DEL>"],
        "status": ["ok", "duplicate", "ok", "symbolic_allele"],
        "status_detail": ["", "same variant as record 1", "", "symbolic ALT"],
    })


def test_every_row_kept_non_ok_nan_and_ids_unique(tmp_path):
    a = make_scores_adata(_variants(), {"delta_ll": np.array([-1.0, -1.0, 0.5, 2.0])}, uns={"model": "x"})
    assert a.n_obs == 4 and a.obs_names.is_unique
    assert a.obs_names.tolist() == ["chr1:10:A:C", "chr1:10:A:C#2", "chr1:12:G:T", "chr2:5:T:<DEL>"]
    x = a[:, "delta_ll"].X.ravel()
    assert x[0] == -1.0 and x[2] == 0.5 and np.isnan(x[1]) and np.isnan(x[3])
    path = write_scores(a, tmp_path / "s.h5ad")
    b = read_scores(path)
    assert b.obs["status"].tolist() == a.obs["status"].tolist()
    np.testing.assert_array_equal(np.asarray(b.X), np.asarray(a.X))


def test_add_scores_by_id_and_concat():
    a = make_scores_adata(_variants(), {"delta_ll": np.arange(4.0)})
    extra = pd.DataFrame({"pathogenicity": [0.9, 0.1]}, index=pd.Index(["chr1:12:G:T", "chr1:10:A:C"], name="variant_id"))
    b = add_scores(a, extra)
    assert list(b.var_names) == ["delta_ll", "pathogenicity"]
    f = scores_frame(b).set_index("variant_id")
    assert f.loc["chr1:12:G:T", "pathogenicity"] == np.float32(0.9)
    assert np.isnan(f.loc["chr1:10:A:C#2", "pathogenicity"])
    halves = concat_scores([b[:2].copy(), b[2:].copy()])
    assert halves.obs_names.tolist() == b.obs_names.tolist()


def test_concat_renumbers_duplicates_split_across_shards():
    v = _variants()
    whole = make_scores_adata(v, {"delta_ll": np.arange(4.0)})
    parts = [make_scores_adata(v.iloc[:1], {"delta_ll": [0.0]}), make_scores_adata(v.iloc[1:], {"delta_ll": [1.0, 2, 3]})]
    merged = concat_scores(parts)
    assert merged.obs_names.tolist() == whole.obs_names.tolist()
