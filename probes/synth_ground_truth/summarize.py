"""Markdown tables of a model run of run.sh beside its random-init control run (for RESULTS.md).

Reads, from each run folder, ``per_class.tsv`` (per_class.py), ``eval_<test set>.json``
(``biointerp probe evaluate``), ``train_seconds.tsv`` and the probe files' cards, and prints:
per consequence class AUROC [95% CI] of each score (model vs control, shared vs novel
families); overall and within-variant-class AUROC beside the model-free baselines; the
covariance-probe roots at equal budget (AUROC, paired difference from ``newton_schulz``,
epochs, training seconds).

    python probes/synth_ground_truth/summarize.py --model results/synth_novel/model \\
        --control results/synth_novel/control --out results/synth_novel/summary.md
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

SETS = {"test": "shared families", "test_novel": "novel families"}
ROOTS = ("newton_schulz", "sym_eigh", "gram_eigh")


def ci(x: float, lo: float, hi: float) -> str:
    """``0.700 [0.650, 0.750]`` (point only when the interval is missing)."""
    if pd.isna(x):
        return "NA"
    return f"{x:.3f}" if pd.isna(lo) or pd.isna(hi) else f"{x:.3f} [{lo:.3f}, {hi:.3f}]"


def probe_name(root: str) -> str:
    """Score column of a covariance probe trained with ``--root root`` (as run.sh names it)."""
    return "probe_covariance" if root == "newton_schulz" else f"probe_covariance_{root}"


def per_class_table(runs: dict[str, Path], score: str) -> str:
    """One score: rows = classes (``all`` first), columns = run x test set."""
    cols, rows = {}, None
    for run, d in runs.items():
        t = pd.read_csv(d / "per_class.tsv", sep="\t")
        t = t[t["score"] == score]
        for ts, label in SETS.items():
            s = t[t["test_set"] == ts].set_index("class")
            if s.empty:
                continue
            cols[f"{run}, {label}"] = {c: ci(r.auroc, r.lo, r.hi) for c, r in s.iterrows()}
            if rows is None:
                rows = [("all", "damaging vs neutral", int(s.loc["all", "n"]))] + [
                    (c, r.label, int(r.n)) for c, r in s.iterrows() if c != "all"]
    if rows is None:
        raise SystemExit(f"score {score!r} in no per_class.tsv")
    head = "| class (label, n) | " + " | ".join(cols) + " |"
    lines = [head, "|" + " --- |" * (len(cols) + 1)]
    for c, label, n in rows:
        lines.append(f"| {c} ({label}, n={n}) | " + " | ".join(v.get(c, "NA") for v in cols.values()) + " |")
    return "\n".join(lines)


def overall_table(runs: dict[str, Path], scores: list[str]) -> str:
    """Overall and within-variant-class AUROC per run x test set, baselines included."""
    lines = ["| test set | score | " + " | ".join(f"{r}: overall | {r}: within variant class" for r in runs) + " |",
             "|" + " --- |" * (2 + 2 * len(runs))]
    for ts, label in SETS.items():
        evs = {r: d / f"eval_{ts}.json" for r, d in runs.items()}
        if not all(p.exists() for p in evs.values()):
            continue
        cmp = {r: json.loads(p.read_text())["comparison"] for r, p in evs.items()}
        first = next(iter(cmp.values()))
        names = scores + [o["score"] for o in first["overall"] if o["kind"] == "baseline"]
        for s in names:
            cells = []
            for c in cmp.values():
                o = {x["score"]: x for x in c["overall"]}.get(s)
                w = {x["score"]: x for x in c["within"] if x["by"] == "variant_class"}.get(s)
                cells.append(ci(o["auroc"], o["auroc_lo"], o["auroc_hi"]) if o else "NA")
                cells.append(ci(w["auroc_within"], w["lo"], w["hi"]) if w else "NA")
            lines.append(f"| {label} (n={first['n']}) | {s} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _card(path: Path) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return json.loads(f.metadata()["biointerp_card"])


def _paired(c: dict, basis: str, name: str, ref: str) -> str:
    """``name − ref`` AUROC difference with its paired bootstrap interval from an evaluation."""
    pr = [x for x in c.get("pairs", []) if x["basis"] == basis and x["comparison"] == "pair"
          and {x["a"], x["b"]} == {name, ref}]
    if not pr:
        return "NA"
    x, sign = pr[0], (1 if pr[0]["a"] == name else -1)
    lo, hi = sorted((sign * x["delta_lo"], sign * x["delta_hi"]))
    return f"{sign * x['delta']:+.3f} [{lo:+.3f}, {hi:+.3f}]"


def roots_table(runs: dict[str, Path]) -> str:
    """Covariance roots at equal budget: epochs, seconds, AUROC and paired difference from newton_schulz."""
    lines = ["| run | test set | root | epochs run (best) | training s | AUROC overall | − newton_schulz "
             "| AUROC within variant class | − newton_schulz |", "|" + " --- |" * 9]
    ref = probe_name("newton_schulz")
    for run, d in runs.items():
        secs = pd.read_csv(d / "train_seconds.tsv", sep="\t").drop_duplicates("probe", keep="last")
        secs = secs.set_index("probe")["seconds"]
        for ts, label in SETS.items():
            p = d / f"eval_{ts}.json"
            if not p.exists():
                continue
            c = json.loads(p.read_text())["comparison"]
            over = {x["score"]: x for x in c["overall"]}
            within = {x["score"]: x for x in c["within"] if x["by"] == "variant_class"}
            for root in ROOTS:
                name = probe_name(root)
                f = d / f"{name.removeprefix('probe_')}.safetensors"
                if not f.exists() or name not in over:
                    continue
                tr = _card(f)["training"]
                o, w = over[name], within.get(name)
                same = root == "newton_schulz"
                lines.append(" | ".join([
                    f"| {run}", label, root, f"{tr['epochs']} ({tr['best_epoch']})",
                    f"{secs.get(name.removeprefix('probe_'), float('nan')):.0f}",
                    ci(o["auroc"], o["auroc_lo"], o["auroc_hi"]),
                    "–" if same else _paired(c, "overall", name, ref),
                    ci(w["auroc_within"], w["lo"], w["hi"]) if w else "NA",
                    "–" if same else _paired(c, "within:variant_class", name, ref)]) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, type=Path, help="run.sh OUT folder of the trained model")
    ap.add_argument("--control", required=True, type=Path, help="run.sh OUT folder of the random-init control")
    ap.add_argument("--out", type=Path, help="also write the markdown here")
    a = ap.parse_args()
    runs = {"model": a.model, "control": a.control}
    scores = ["-delta_ll", "probe_linear"] + [probe_name(r) for r in ROOTS]
    parts = ["## Overall and within variant class (baselines fitted on synth1-3)", "", overall_table(runs, scores)]
    for s in scores:
        parts += ["", f"## Per class: {s}", "", per_class_table(runs, s)]
    parts += ["", "## Covariance roots at equal budget", "", roots_table(runs), ""]
    text = "\n".join(parts)
    print(text)
    if a.out:
        a.out.write_text(text)


if __name__ == "__main__":
    main()
