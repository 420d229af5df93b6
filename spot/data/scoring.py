"""From predicted text to a task's metrics: postprocessors, the metric table, the average.

Metrics are reported on a 0-100 scale as the papers do. `score` is the mean of a task's
metrics and is what picks the best checkpoint, so an undefined value (a correlation of a
constant prediction) counts as 0 rather than NaN, which would poison the comparison.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

from spot.data import metrics as M
from spot.errors import DataError

# metric name -> fn(predictions, targets, examples, label_words) -> value on its natural scale
MetricFn = Callable[[list, list, Sequence[dict], Sequence[str] | None], float]


def _answers(targets: list, examples: Sequence[dict]) -> list[list[str]]:
    out = []
    for t, ex in zip(targets, examples):
        a = ex.get("answers") if ex else None
        out.append([str(x) for x in a] if a else [str(t)])
    return out


def _references(targets: list, examples: Sequence[dict]) -> list[list[str]]:
    out = []
    for t, ex in zip(targets, examples):
        r = ex.get("references") if ex else None
        out.append([str(x) for x in r] if r else [str(t)])
    return out


def _positive(label_words: Sequence[str] | None, targets: list) -> Any:
    if label_words and len(label_words) == 2:
        return label_words[1]
    if "True" in targets:
        return "True"
    raise DataError("binary f1 needs exactly two label words (the second is positive)")


def _f1(p, t, ex, words):
    if words and len(words) != 2:
        return M.macro_f1(p, t, words)
    return M.f1_binary(p, t, _positive(words, t))


def _groups(examples: Sequence[dict]) -> list:
    return [ex.get("group", i) if ex else i for i, ex in enumerate(examples)]


METRICS: dict[str, MetricFn] = {
    "accuracy": lambda p, t, ex, w: M.accuracy(p, t),
    "f1": _f1,
    "macro_f1": lambda p, t, ex, w: M.macro_f1(p, t, w),
    "mcc": lambda p, t, ex, w: M.mcc(p, t),
    "pearson": lambda p, t, ex, w: M.pearson(p, t),
    "spearman": lambda p, t, ex, w: M.spearman(p, t),
    "squad_em": lambda p, t, ex, w: M.squad(p, _answers(t, ex))["em"],
    "squad_f1": lambda p, t, ex, w: M.squad(p, _answers(t, ex))["f1"],
    "record_em": lambda p, t, ex, w: M.squad(p, _answers(t, ex))["em"],
    "record_f1": lambda p, t, ex, w: M.squad(p, _answers(t, ex))["f1"],
    "multirc_f1a": lambda p, t, ex, w: M.multirc_f1a(p, t),
    "multirc_em": lambda p, t, ex, w: M.multirc_em(p, t, _groups(ex)),
    "rouge1": lambda p, t, ex, w: M.rouge(p, _references(t, ex))["rouge1"],
    "rouge2": lambda p, t, ex, w: M.rouge(p, _references(t, ex))["rouge2"],
    "rougeL": lambda p, t, ex, w: M.rouge(p, _references(t, ex))["rougeL"],
    "bleu": lambda p, t, ex, w: M.corpus_bleu(p, _references(t, ex)),
}

ALIASES = {
    "acc": "accuracy", "exact_match": "squad_em", "em": "squad_em", "matthews": "mcc",
    "matthews_corrcoef": "mcc", "f1_macro": "macro_f1", "rouge_l": "rougeL", "rougel": "rougeL",
    "rouge_1": "rouge1", "rouge_2": "rouge2", "pearson_r": "pearson", "spearman_r": "spearman",
    "spearman_rho": "spearman", "sacrebleu": "bleu",
}

REGRESSION = {"pearson", "spearman"}


def canonical_metric(name: str) -> str:
    key = ALIASES.get(name, ALIASES.get(name.lower(), name))
    if key not in METRICS:
        raise DataError(f"unknown metric {name!r}; known metrics: {', '.join(sorted(METRICS))}")
    return key


# ---------------------------------------------------------------------------------------
# Postprocessors: what a prediction string means before it is compared.


def _to_float(s: str) -> float:
    try:
        v = float(str(s).strip())
    except ValueError:
        return -1.0  # T5's convention for unparsable regression outputs
    return v if math.isfinite(v) else -1.0


def _label_set(s: str) -> str:
    return ", ".join(sorted({x.strip() for x in str(s).split(",") if x.strip()}))


POSTPROCESSORS: dict[str, Callable[[str], Any]] = {
    "strip": lambda s: str(s).strip(),
    "float": _to_float,
    "label_set": _label_set,
}


def default_postprocessor(metric_names: Sequence[str]) -> str:
    return "float" if metric_names and set(metric_names) <= REGRESSION else "strip"


def compute(metric_names: Sequence[str], predictions: Sequence[str], targets: Sequence[str],
            examples: Sequence[dict], *, label_words: Sequence[str] | None = None,
            postprocessor: str = "strip") -> dict[str, float]:
    """Every metric on the 0-100 scale plus `score`, their mean."""
    if len(predictions) != len(targets):
        raise DataError(f"{len(predictions)} predictions for {len(targets)} examples")
    post = POSTPROCESSORS[postprocessor]
    preds = [post(p) for p in predictions]
    golds = [post(t) for t in targets]
    exs = list(examples) if examples else [{}] * len(golds)
    out: dict[str, float] = {}
    for name in metric_names:
        value = METRICS[name](preds, golds, exs, label_words) * 100.0
        out[name] = value if math.isfinite(value) else 0.0
    out["score"] = sum(out[m] for m in metric_names) / len(metric_names) if metric_names else 0.0
    return out
