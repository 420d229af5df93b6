"""Transfer study results: relative error reduction, oracle and baseline, ranking quality.

A results table is a CSV with columns ``source,target,seed,score`` (extra columns are
ignored); ``source == "none"`` marks prompt tuning from scratch, the baseline. Scores are
on a 0-100 scale (correlation metrics may dip below 0, down to -100); others are refused.
For each (source, target) the seeds are averaged, then

    relative error reduction = (mean transfer - mean baseline) / (100 - mean baseline) x 100.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from spot.errors import DataError
from spot.retrieval.quality import rank_by, ranking_quality

BASELINE = "none"
RESULT_COLUMNS = ("source", "target", "seed", "score")
SIMILARITY_COLUMNS = ("metric", "source", "target", "similarity")
# Scores are percentages; correlation metrics (mcc, pearson, spearman) x 100 reach -100.
SCORE_MIN, SCORE_MAX = -100.0, 100.0

Similarities = Mapping[str, Mapping[tuple[str, str], float]]


@dataclass(frozen=True)
class Row:
    source: str
    target: str
    seed: int
    score: float
    line: int = 0


def _read_csv(path: str | os.PathLike, required: Sequence[str]) -> tuple[Path, list[tuple[int, dict]]]:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not UTF-8 text (byte {data[e.start]:#04x}); save the "
                        "file as UTF-8") from None
    # newline="": only CR/LF end a row (str.splitlines would also split at U+2028 and NEL,
    # which may sit inside a field).
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        header = [h.strip() for h in (reader.fieldnames or [])]
    except csv.Error as e:
        raise DataError(f"{path}:1: malformed CSV header: {e}") from None
    if not header:
        raise DataError(f"{path} is empty; expected a header with columns {', '.join(required)}")
    reader.fieldnames = header
    missing = [c for c in required if c not in header]
    if missing:
        raise DataError(f"{path}:1: missing column(s) {', '.join(missing)}; found {', '.join(header)}")
    rows = []
    records = iter(reader)
    while True:
        try:
            record = next(records)
        except StopIteration:
            break
        except csv.Error as e:
            raise DataError(f"{path}:{reader.line_num}: malformed CSV row: {e}") from None
        # The record's first line (line_num is its last when a quoted field spans lines).
        cells = [v for v in record.values() if isinstance(v, str)] + (record.get(None) or [])
        line = reader.line_num - sum(len(re.findall(r"\r\n|\r|\n", c)) for c in cells)
        if None in record:
            raise DataError(f"{path}:{line}: more fields than the {len(header)} header columns")
        for column in required:
            if record.get(column) is None:
                raise DataError(f"{path}:{line}: column {column!r} is missing (too few fields)")
        rows.append((line, {k: (v or "").strip() for k, v in record.items()}))
    if not rows:
        raise DataError(f"{path} has a header but no data rows")
    return path, rows


def _number(path: Path, line: int, column: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise DataError(f"{path}:{line}: column {column!r} must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise DataError(f"{path}:{line}: column {column!r} is not finite: {text!r}")
    return value


def _label(path: Path, line: int, column: str, text: str) -> str:
    if not text:
        raise DataError(f"{path}:{line}: column {column!r} is empty")
    return text


def read_results(path: str | os.PathLike) -> list[Row]:
    """Parse and validate a results CSV; every problem names the file, line and column."""
    path, records = _read_csv(path, RESULT_COLUMNS)
    rows, seen = [], {}
    for line, rec in records:
        source = _label(path, line, "source", rec["source"])
        target = _label(path, line, "target", rec["target"])
        if target == BASELINE:
            raise DataError(f"{path}:{line}: column 'target' cannot be {BASELINE!r} (reserved for the baseline source)")
        try:
            seed = int(rec["seed"])
        except ValueError:
            raise DataError(f"{path}:{line}: column 'seed' must be an integer, got {rec['seed']!r}") from None
        score = _number(path, line, "score", rec["score"])
        if not SCORE_MIN <= score <= SCORE_MAX:
            raise DataError(f"{path}:{line}: column 'score' is {rec['score']!r}, off the 0-100 scale "
                            f"(scores lie in [{SCORE_MIN:g}, {SCORE_MAX:g}]; correlations can be negative)")
        key = (source, target, seed)
        if key in seen:
            raise DataError(f"{path}:{line}: duplicate result for source {source!r}, target {target!r}, "
                            f"seed {seed} (first on line {seen[key]})")
        seen[key] = line
        rows.append(Row(source, target, seed, score, line))
    return rows


def read_similarities(path: str | os.PathLike) -> dict[str, dict[tuple[str, str], float]]:
    """A CSV with columns ``metric,source,target,similarity`` into {metric: {(source, target): value}}."""
    from spot.retrieval.similarity import METRICS

    path, records = _read_csv(path, SIMILARITY_COLUMNS)
    out: dict[str, dict[tuple[str, str], float]] = {}
    for line, rec in records:
        metric = _label(path, line, "metric", rec["metric"])
        if metric not in METRICS:
            raise DataError(f"{path}:{line}: unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
        key = (_label(path, line, "source", rec["source"]), _label(path, line, "target", rec["target"]))
        if key in out.setdefault(metric, {}):
            raise DataError(f"{path}:{line}: duplicate similarity for {metric} {key}")
        out[metric][key] = _number(path, line, "similarity", rec["similarity"])
    return out


def relative_error_reduction(score: float, baseline: float) -> float:
    """(score - baseline) / (100 - baseline) x 100: the share of the baseline's error removed."""
    if baseline >= 100.0:
        raise DataError(f"baseline score {baseline} leaves no error to reduce (scores are on a 0-100 scale)")
    return (score - baseline) / (100.0 - baseline) * 100.0


def _safe_rer(score: float, baseline: float | None) -> float | None:
    if baseline is None or baseline >= 100.0:
        return None
    return relative_error_reduction(score, baseline)


def _mean(values: Sequence[float]) -> float | None:
    return statistics.fmean(values) if values else None


def summarize(rows: Sequence[Row], similarities: Similarities | None = None) -> dict[str, Any]:
    """Per-pair statistics, baseline, oracle and (given similarities) best-of-top-k curves.

    `std` is the sample standard deviation over seeds (None for a single seed).
    `similarities` maps metric -> {(source, target): similarity}.
    """
    if not rows:
        raise DataError("no results to summarize")
    scores: dict[tuple[str, str], list[float]] = {}
    for row in sorted(rows, key=lambda r: (r.source, r.target, r.seed)):
        scores.setdefault((row.source, row.target), []).append(row.score)
    targets = sorted({t for _, t in scores})
    sources = sorted({s for s, _ in scores if s != BASELINE})
    notes: list[str] = []

    def stats(values: list[float]) -> dict[str, Any]:
        return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else None,
                "n": len(values)}

    baseline = {t: stats(scores[(BASELINE, t)]) for t in targets if (BASELINE, t) in scores}
    for t in targets:
        if t not in baseline:
            notes.append(f"target {t!r} has no baseline rows (source {BASELINE!r}); its relative error "
                         "reductions are null")
        elif baseline[t]["mean"] >= 100.0:
            notes.append(f"target {t!r} has a baseline of 100; its relative error reductions are null")
    pairs = []
    for t in targets:
        base = baseline.get(t, {}).get("mean")
        for s in sources:
            if (s, t) in scores:
                st = stats(scores[(s, t)])
                pairs.append({"source": s, "target": t, **st,
                              "relative_error_reduction": _safe_rer(st["mean"], base)})
    by_target: dict[str, dict[str, dict]] = {}
    for p in pairs:
        by_target.setdefault(p["target"], {})[p["source"]] = p
    best_source = {t: min(ps.values(), key=lambda p: (-p["mean"], p["source"]))["source"]
                   for t, ps in by_target.items()}
    oracle = {t: by_target[t][s]["mean"] for t, s in best_source.items()}
    oracle_rer = [by_target[t][s]["relative_error_reduction"] for t, s in best_source.items()
                  if by_target[t][s]["relative_error_reduction"] is not None]
    summary: dict[str, Any] = {
        "targets": targets,
        "sources": sources,
        "pairs": pairs,
        "baseline": {t: b["mean"] for t, b in baseline.items()},
        "baseline_std": {t: b["std"] for t, b in baseline.items()},
        "baseline_n": {t: b["n"] for t, b in baseline.items()},
        "best_source": best_source,
        "oracle": oracle,
        "baseline_average": _mean([b["mean"] for b in baseline.values()]),
        "oracle_average": _mean(list(oracle.values())),
        "oracle_relative_error_reduction_average": _mean(oracle_rer),
        "notes": notes,
    }
    if similarities:
        summary["best_of_top_k"] = {}
        summary["ranking_quality"] = {}
        for metric in sorted(similarities):
            curve, quality = _retrieval_curves(by_target, baseline, similarities[metric])
            summary["best_of_top_k"][metric] = curve
            summary["ranking_quality"][metric] = quality
    return summary


def _retrieval_curves(by_target: Mapping[str, Mapping[str, dict]], baseline: Mapping[str, dict],
                      sims: Mapping[tuple[str, str], float]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Best-of-top-k: per target, the best mean score among the k most similar sources."""
    per_target: dict[str, list[float]] = {}
    quality: dict[str, Any] = {}
    for t, ps in sorted(by_target.items()):
        predicted = {s: float(sims[(s, t)]) for s in ps if (s, t) in sims}
        if not predicted:
            continue
        true = {s: ps[s]["mean"] for s in predicted}
        order = rank_by(predicted, list(predicted))
        running, best = [], -math.inf
        for s in order:
            best = max(best, true[s])
            running.append(best)
        per_target[t] = running
        quality[t] = ranking_quality(predicted, true, ks=(1, 3))
    depth = max((len(v) for v in per_target.values()), default=0)
    ks = list(range(1, depth + 1))
    avg_score, avg_rer, avg_regret = [], [], []
    for k in ks:
        at_k = {t: v[min(k, len(v)) - 1] for t, v in per_target.items()}
        avg_score.append(_mean(list(at_k.values())))
        rers = [_safe_rer(v, baseline.get(t, {}).get("mean")) for t, v in at_k.items()]
        avg_rer.append(_mean([r for r in rers if r is not None]))
        regrets = [(v[-1] - at_k[t]) / v[-1] * 100.0 for t, v in per_target.items() if v[-1] > 0]
        avg_regret.append(_mean(regrets))
    curve = {"k": ks, "average_score": avg_score, "average_relative_error_reduction": avg_rer,
             "average_regret": avg_regret, "per_target": per_target}
    return curve, quality


def _fmt(x: float | None, spec: str = ".1f") -> str:
    return "n/a" if x is None else format(x, spec)


def markdown_table(summary: Mapping[str, Any]) -> str:
    """Sources x targets: mean ± std over seeds, relative error reduction in parentheses,
    the best source per target in bold; baseline and oracle rows; averages at the end."""
    targets, sources = summary["targets"], summary["sources"]
    cell = {(p["source"], p["target"]): p for p in summary["pairs"]}
    head = ["source \\ target", *targets, "avg RER"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    base_cells = []
    for t in targets:
        if t in summary["baseline"]:
            std = summary["baseline_std"].get(t)
            base_cells.append(_fmt(summary["baseline"][t]) + ("" if std is None else f" ± {std:.1f}"))
        else:
            base_cells.append("n/a")
    lines.append("| none (baseline) | " + " | ".join(base_cells) + " | 0.0 |")
    for s in sources:
        cells, rers = [], []
        for t in targets:
            p = cell.get((s, t))
            if p is None:
                cells.append("")
                continue
            text = _fmt(p["mean"]) + ("" if p["std"] is None else f" ± {p['std']:.1f}")
            if p["relative_error_reduction"] is not None:
                text += f" ({p['relative_error_reduction']:+.1f})"
                rers.append(p["relative_error_reduction"])
            if summary["best_source"].get(t) == s:
                text = f"**{text}**"
            cells.append(text)
        lines.append(f"| {s} | " + " | ".join(cells) + f" | {_fmt(_mean(rers), '+.1f')} |")
    oracle = [f"{_fmt(summary['oracle'].get(t))} ({summary['best_source'].get(t, 'n/a')})" for t in targets]
    lines.append("| oracle (best source) | " + " | ".join(oracle)
                 + f" | {_fmt(summary.get('oracle_relative_error_reduction_average'), '+.1f')} |")
    lines.append("")
    lines.append(f"Baseline average: {_fmt(summary['baseline_average'], '.2f')}; "
                 f"oracle average: {_fmt(summary['oracle_average'], '.2f')}. "
                 "Cells: mean ± sample std over seeds (relative error reduction, %).")
    for metric, curve in (summary.get("best_of_top_k") or {}).items():
        lines.append("")
        lines.append(f"Best of top-k by {metric}:")
        lines.append("")
        lines.append("| k | average score | average RER | average regret |")
        lines.append("|---|---|---|---|")
        for i, k in enumerate(curve["k"]):
            lines.append(f"| {k} | {_fmt(curve['average_score'][i], '.2f')} | "
                         f"{_fmt(curve['average_relative_error_reduction'][i], '+.1f')} | "
                         f"{_fmt(curve['average_regret'][i], '.2f')} |")
    for note in summary.get("notes", []):
        lines.append("")
        lines.append(f"Note: {note}")
    return "\n".join(lines) + "\n"


def library_task_similarities(library: Any, tasks: Sequence[str], metric: str,
                              model: str | None = None) -> tuple[list[str], np.ndarray]:
    """Task x task similarity matrix from a PromptLibrary: each cell averages over all run
    pairs of the two tasks' keys. Tasks missing from the library are left out."""
    from spot.retrieval.similarity import check_metric, prepare_embeddings, prepared_matrix

    check_metric(metric)
    runs = {}
    for task in tasks:
        keys = [library.load_embedding(e) for e in library.entries(task=task, model=model)]
        if keys:
            runs[task] = prepare_embeddings(keys, metric, f"runs of task {task!r}")
    names = sorted(runs)
    matrix = np.empty((len(names), len(names)))
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            matrix[i, j] = float(np.mean(prepared_matrix(runs[a], runs[b], metric))) if j >= i else matrix[j, i]
    return names, matrix
