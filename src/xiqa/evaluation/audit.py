"""The paper audit (issue 13): each saliency method as the paper describes it (``correct``), with
each deviation of the authors' code switched on alone, and with all of them (``all``), scored
with the pointing game on the same images; ``xiqa audit`` and ``xiqa audit-table``.

``run_audit`` explains every positive image of a split that has a box pixel (the images the
pointing game counts, :func:`xiqa.evaluation.pointing.run_pointing`) with every variant, in
float32, and keeps only each map's peak and hit: ``results/audit/{method}/{split}.csv``
(docs/formats.md). ``audit_table`` reads those CSVs into one row per method and variant, with
Wilson intervals, exact McNemar tests against ``correct`` and the paper's published values.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from xiqa.errors import InputError
from xiqa.evaluation.pointing import nearest_box_distance, peak
from xiqa.evaluation.shards import shard_indices
from xiqa.evaluation.stats import mcnemar_exact, wilson_interval
from xiqa.evaluation.tables import (
    PAPER_TABLE,
    _fmt,
    _latex_escape,
    _p,
    _write_csv,
    _write_text,
    latex_table,
)
from xiqa.io import numeric_columns, progress_bar, read_csv, staged_outputs, write_csv
from xiqa.model.network import resolve_device, to_model_input, use_full_fp32
from xiqa.model.predict import load_model_and_cache
from xiqa.saliency import FAMILIES, explain, resolve_method

AUDIT_COLUMNS = ("image_name", "variant", "peak_x", "peak_y", "n_ties", "distance", "hit")
REFERENCE = "correct"  # the variant every other is tested against
EVERYTHING = "all"  # every deviation together: the authors' code
PAPER_SETUP = "600 px, τ = 25"


def check_variants(method: str, variants: Any) -> dict[str, tuple[str, dict[str, Any]]]:
    """(family, parameters without the family) per variant name; bad input is an InputError
    naming the variant."""
    if not isinstance(variants, dict) or not variants:
        raise InputError(f"{method}: --variants must be a non-empty JSON object (name -> entry)")
    if REFERENCE not in variants:
        raise InputError(f"{method}: --variants has no {REFERENCE!r} variant to compare against")
    checked = {}
    for name, entry in variants.items():
        if not isinstance(entry, dict) or "family" not in entry:
            raise InputError(f"{method}: variant {name!r} must be an entry with a 'family'")
        checked[name] = resolve_method(f"{method}/{name}", entry)
    return checked


def run_audit(
    model_path: str | os.PathLike,
    images_path: str | os.PathLike,
    method: str,
    variants: dict[str, dict[str, Any]],
    tau: float,
    out: str | os.PathLike,
    batch_size: int = 16,
    device: str = "auto",
) -> dict[str, dict[str, int]]:
    """Score every variant of one method on a split's counted positive images; write the CSV
    (one row per variant and image, variants in the given order). Returns per variant the
    counted images ``n`` and the ``hits``."""
    if not tau > 0:
        raise InputError(f"--tau {tau}: the tolerance must be positive")
    checked = check_variants(method, variants)
    dev = resolve_device(device)
    use_full_fp32(dev)
    model, cache = load_model_and_cache(model_path, images_path, dev)
    for name, (family, params) in checked.items():  # aliases resolved, layers checked
        checked[name] = family, FAMILIES[family].resolve_layers(f"{method}/{name}", model, params)
    # The images run_pointing counts: the positives with a box pixel, in cache order.
    rows = [
        int(i)
        for i in shard_indices(cache, 0, 1)
        if np.isfinite(nearest_box_distance(0, 0, cache.boxes_of(int(i))))
    ]
    found: dict[str, list[dict[str, Any]]] = {name: [] for name in checked}
    batches = [rows[i : i + batch_size] for i in range(0, len(rows), batch_size)]
    for batch in progress_bar(iterable=batches, desc=f"audit {method}", unit="batch"):
        x = to_model_input(torch.from_numpy(cache.images[batch]).to(dev))
        labels = torch.from_numpy(cache.label[batch]).to(dev)
        for name, (family, params) in checked.items():
            maps = explain(model, x, targets=labels, method=family, **params).float().cpu().numpy()
            for index, saliency_map in zip(batch, maps, strict=True):
                try:
                    px, py, ties = peak(saliency_map)
                except ValueError as exc:
                    raise InputError(
                        f"{method}/{name}: map of {cache.image_name[index]!r}: {exc}"
                    ) from None
                distance = nearest_box_distance(px, py, cache.boxes_of(index))
                found[name].append(
                    {
                        "image_name": cache.image_name[index],
                        "variant": name,
                        "peak_x": px,
                        "peak_y": py,
                        "n_ties": ties,
                        "distance": distance,
                        "hit": int(distance < tau),
                    }
                )
    records = [row for name in checked for row in found[name]]
    write_csv(pd.DataFrame(records, columns=AUDIT_COLUMNS), out)
    return {
        name: {"n": len(found[name]), "hits": sum(r["hit"] for r in found[name])}
        for name in checked
    }


def read_audit(path: Path) -> dict[str, dict[str, tuple[int, int]]]:
    """variant -> image name -> (hit, n_ties), variants in file order, from ``xiqa audit``'s
    CSV."""
    frame = read_csv(path, "audit results")
    missing = [c for c in AUDIT_COLUMNS if c not in frame.columns]
    if missing:
        raise InputError(f"{path}: not an audit CSV (no column {', '.join(missing)})")
    error = "not an xiqa audit row"
    numbers = numeric_columns(frame, ("hit", "n_ties"), path, error)
    bad = numbers.index[~numbers["hit"].isin([0, 1]) | (numbers["n_ties"] < 1)]
    if len(bad):
        raise InputError(f"{path}: line {bad[0] + 2}: {error}")
    results: dict[str, dict[str, tuple[int, int]]] = {}
    for variant, name, hit, ties in zip(
        frame["variant"], frame["image_name"], numbers["hit"], numbers["n_ties"], strict=True
    ):
        results.setdefault(variant, {})[name] = (int(hit), int(ties))
    if REFERENCE not in results:
        raise InputError(f"{path}: no {REFERENCE!r} variant to compare against")
    return results


def audit_table(
    results_dir: str | os.PathLike,
    methods: dict[str, dict[str, Any]],
    splits: list[str],
    paper: bool,
) -> list[dict[str, Any]]:
    """One row per method and variant (the variants of the method's CSVs, in their order): per
    split the counted images, hits, accuracy, Wilson 95% interval, the exact McNemar p against
    ``correct`` on the images both scored (blank for ``correct``) and the share of tied peaks;
    and on the ``all`` row the paper's published val and test accuracy (at 600 px, tau 25),
    for a method named as in the paper. ``paper``: this run has the paper's setup."""
    del paper  # the published values are shown either way; the captions say which setup ran
    results_dir = Path(results_dir)
    if not methods:
        raise InputError("no methods to audit")
    rows = []
    for method in methods:
        per_split = {s: read_audit(results_dir / "audit" / method / f"{s}.csv") for s in splits}
        variants = list(dict.fromkeys(v for s in splits for v in per_split[s]))
        for variant in variants:
            row: dict[str, Any] = {"method": method, "variant": variant}
            for split in splits:
                scored = per_split[split].get(variant, {})
                reference = per_split[split][REFERENCE]
                hits = sum(hit for hit, _ in scored.values())
                n = len(scored)
                low, high = wilson_interval(hits, n)
                p: Any = ""
                if variant != REFERENCE:
                    shared = scored.keys() & reference.keys()
                    only_variant = sum(scored[k][0] and not reference[k][0] for k in shared)
                    only_correct = sum(reference[k][0] and not scored[k][0] for k in shared)
                    p = mcnemar_exact(only_variant, only_correct)
                tied = sum(ties > 1 for _, ties in scored.values())
                row.update(
                    {
                        f"{split}_n": n,
                        f"{split}_hits": hits,
                        f"{split}_accuracy": hits / n if n else math.nan,
                        f"{split}_ci_low": low,
                        f"{split}_ci_high": high,
                        f"{split}_p_vs_correct": p,
                        f"{split}_tied_peaks": tied / n if n else math.nan,
                    }
                )
            published = PAPER_TABLE.get(method) if variant == EVERYTHING else None
            for k, split in enumerate(("val", "test")):
                value = published[k] if published else None
                row[f"paper_{split}"] = "" if value is None else value
            rows.append(row)
    return rows


def _p_vs_correct(value: Any) -> str:
    return "ref." if value == "" else _p(value)


def _accuracy(row: dict[str, Any], split: str, dash: str = ", ") -> str:
    return (
        f"{_fmt(row[f'{split}_accuracy'])} [{_fmt(row[f'{split}_ci_low'])}{dash}"
        f"{_fmt(row[f'{split}_ci_high'])}] (n = {row[f'{split}_n']})"
    )


def _setup_note(paper: bool, tau: float | None) -> str:
    if paper:
        return f"This run has the paper's setup ({PAPER_SETUP})."
    here = "" if tau is None else f" (here τ = {tau:g} px)"
    return (
        f"The paper's values are at {PAPER_SETUP} on the real Object-CXR data, a setup that "
        f"differs from this run's{here}: compare the direction of the change, not the values."
    )


def audit_markdown(
    rows: list[dict[str, Any]], splits: list[str], paper: bool, tau: float | None = None
) -> str:
    header = ["Method", "Variant"]
    for split in splits:
        header += [f"{split} accuracy [95% CI]", f"{split} p vs correct", f"{split} tied peaks"]
    header += [f"paper {s} ({PAPER_SETUP})" for s in ("val", "test")]
    lines = ["| " + " | ".join(header) + " |", "|---|---|" + "---:|" * (len(header) - 2)]
    for row in rows:
        variant = row["variant"]
        cells = [row["method"], f"**{variant}**" if variant in (REFERENCE, EVERYTHING) else variant]
        for split in splits:
            cells += [
                _accuracy(row, split),
                _p_vs_correct(row[f"{split}_p_vs_correct"]),
                f"{_fmt(row[f'{split}_tied_peaks'] * 100, 0)}%",
            ]
        cells += [_fmt(row[f"paper_{s}"]) for s in ("val", "test")]
        lines.append("| " + " | ".join(cells) + " |")
    notes = (
        "\nThe paper audit: pointing-game accuracy of each method as the paper describes it "
        f"(**{REFERENCE}**), with each deviation of the authors' code alone, and with all of "
        f"them (**{EVERYTHING}**, what the authors' code computes), on the same images. 95% "
        "Wilson intervals; p: exact McNemar test against the correct variant on the same "
        "images; tied peaks: share of maps whose maximum several pixels share. The paper's "
        f"published accuracy is shown on the {EVERYTHING} row. " + _setup_note(paper, tau) + "\n"
    )
    return "\n".join(lines) + "\n" + notes


def audit_latex(
    rows: list[dict[str, Any]], splits: list[str], paper: bool, tau: float | None = None
) -> str:
    columns = "ll" + "rr" * len(splits) + "rr"
    head = " & ".join(
        ["Method", "Variant"]
        + [f"{s} (95\\% CI) & p" for s in splits]
        + [f"paper {s}" for s in ("val", "test")]
    )
    body = []
    for row in rows:
        cells = [_latex_escape(row["method"]), _latex_escape(row["variant"])]
        for split in splits:
            cells.append(_accuracy(row, split, "--"))
            p = _p_vs_correct(row[f"{split}_p_vs_correct"])
            cells.append(_latex_escape(p).replace("<", "$<$"))
        cells += [_fmt(row[f"paper_{s}"]).replace("–", "--") for s in ("val", "test")]
        body.append(" & ".join(cells) + r" \\")
    caption = _latex_escape(
        "The paper audit: pointing-game accuracy per variant; p: exact McNemar test against "
        "the correct variant; the paper's values on the all row. " + _setup_note(paper, tau)
    ).replace("τ", r"$\tau$")
    return latex_table(caption, columns, head, body)


def write_audit_tables(
    results_dir: str | os.PathLike,
    methods: dict[str, dict[str, Any]],
    splits: list[str],
    paper: bool,
    tau: float | None = None,
) -> list[dict[str, Any]]:
    """results/tables/audit.{csv,md,tex} and results/figures/audit.{png,pdf}, all or none."""
    from xiqa.evaluation.figures import audit_figure

    rows = audit_table(results_dir, methods, splits, paper)
    with staged_outputs(results_dir) as stage:
        _write_csv(stage / "tables" / "audit.csv", rows)
        _write_text(stage / "tables" / "audit.md", audit_markdown(rows, splits, paper, tau))
        _write_text(stage / "tables" / "audit.tex", audit_latex(rows, splits, paper, tau))
        audit_figure(stage / "figures", rows, splits)
    return rows
