"""Benchmark metrics in plain numpy/scipy (no TensorFlow), each on its natural scale.

Fractions are in [0, 1] and correlations in [-1, 1]; `spot.data.scoring` multiplies by 100
to report them the way the papers do. Correlations of a constant series are undefined and
come back as NaN here; scoring decides what a NaN means for checkpoint selection.
"""

from __future__ import annotations

import collections
import math
import re
import string
from typing import Hashable, Iterable, Sequence

import numpy as np

# ---------------------------------------------------------------------------------------
# Classification


def accuracy(predictions: Sequence[Hashable], targets: Sequence[Hashable]) -> float:
    _check_lengths(predictions, targets)
    if not targets:
        return float("nan")
    return float(np.mean([p == t for p, t in zip(predictions, targets)]))


def f1_binary(predictions: Sequence[Hashable], targets: Sequence[Hashable],
              positive: Hashable) -> float:
    """F1 of the `positive` class (MRPC, QQP, MultiRC F1a); 0 when nothing is positive."""
    _check_lengths(predictions, targets)
    tp = sum(1 for p, t in zip(predictions, targets) if p == positive and t == positive)
    fp = sum(1 for p, t in zip(predictions, targets) if p == positive and t != positive)
    fn = sum(1 for p, t in zip(predictions, targets) if p != positive and t == positive)
    denom = 2 * tp + fp + fn
    return 2 * tp / denom if denom else 0.0


def macro_f1(predictions: Sequence[Hashable], targets: Sequence[Hashable],
             labels: Sequence[Hashable] | None = None) -> float:
    """Unweighted mean of per-class F1 over `labels` (CB reports this beside accuracy)."""
    labels = list(labels) if labels is not None else sorted(set(targets), key=str)
    if not labels:
        return float("nan")
    return float(np.mean([f1_binary(predictions, targets, c) for c in labels]))


def mcc(predictions: Sequence[Hashable], targets: Sequence[Hashable]) -> float:
    """Matthews correlation from the confusion matrix (multi-class form; CoLA is binary)."""
    _check_lengths(predictions, targets)
    classes = sorted(set(targets) | set(predictions), key=str)
    index = {c: i for i, c in enumerate(classes)}
    cm = np.zeros((len(classes), len(classes)), np.float64)
    for p, t in zip(predictions, targets):
        cm[index[t], index[p]] += 1
    n = cm.sum()
    correct = np.trace(cm)
    t_sum = cm.sum(axis=1)  # true counts per class
    p_sum = cm.sum(axis=0)  # predicted counts per class
    cov_tp = correct * n - float(t_sum @ p_sum)
    cov_pp = n * n - float(p_sum @ p_sum)
    cov_tt = n * n - float(t_sum @ t_sum)
    denom = math.sqrt(cov_pp * cov_tt)
    return cov_tp / denom if denom else 0.0


# ---------------------------------------------------------------------------------------
# Regression


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    from scipy import stats

    x, y = _floats(x), _floats(y)
    if len(x) < 2 or np.all(x == x[0]) or np.all(y == y[0]):
        return float("nan")
    return float(stats.pearsonr(x, y)[0])


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    from scipy import stats

    x, y = _floats(x), _floats(y)
    if len(x) < 2 or np.all(x == x[0]) or np.all(y == y[0]):
        return float("nan")
    return float(stats.spearmanr(x, y)[0])


# ---------------------------------------------------------------------------------------
# Extractive QA (SQuAD, MRQA, ReCoRD, DROP)

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD's normalization: lower case, drop punctuation and articles, squeeze spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, answer: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(answer))


def token_f1(prediction: str, answer: str) -> float:
    pred = normalize_answer(prediction).split()
    gold = normalize_answer(answer).split()
    if not pred or not gold:
        return float(pred == gold)
    common = collections.Counter(pred) & collections.Counter(gold)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(gold)
    return 2 * precision * recall / (precision + recall)


def max_over_answers(fn, prediction: str, answers: Iterable[str]) -> float:
    """The best score against any gold answer (SQuAD and ReCoRD list several)."""
    scores = [fn(prediction, a) for a in answers]
    return max(scores) if scores else 0.0


def squad(predictions: Sequence[str], answers: Sequence[Sequence[str]]) -> dict[str, float]:
    """Mean max-over-answers exact match and token F1."""
    _check_lengths(predictions, answers)
    if not predictions:
        return {"em": float("nan"), "f1": float("nan")}
    em = [max_over_answers(exact_match, p, a) for p, a in zip(predictions, answers)]
    f1 = [max_over_answers(token_f1, p, a) for p, a in zip(predictions, answers)]
    return {"em": float(np.mean(em)), "f1": float(np.mean(f1))}


# ---------------------------------------------------------------------------------------
# MultiRC


def multirc_f1a(predictions: Sequence[Hashable], targets: Sequence[Hashable],
                positive: Hashable = "True") -> float:
    """F1 over every answer option of every question (the `F1a` SuperGLUE reports)."""
    return f1_binary(predictions, targets, positive)


def multirc_em(predictions: Sequence[Hashable], targets: Sequence[Hashable],
               groups: Sequence[Hashable]) -> float:
    """Share of questions whose answer options are all labelled correctly."""
    _check_lengths(predictions, targets)
    _check_lengths(predictions, groups)
    correct: dict[Hashable, bool] = {}
    for p, t, g in zip(predictions, targets, groups):
        correct[g] = correct.get(g, True) and p == t
    if not correct:
        return float("nan")
    return float(np.mean(list(correct.values())))


# ---------------------------------------------------------------------------------------
# Generation: ROUGE and BLEU

_ROUGE_TOKEN = re.compile(r"[a-z0-9]+")


def rouge_tokenize(text: str) -> list[str]:
    """Lower-cased alphanumeric runs (the rouge_score tokenizer without stemming)."""
    return _ROUGE_TOKEN.findall(text.lower())


def _ngrams(tokens: Sequence[str], n: int) -> collections.Counter:
    return collections.Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def _f_measure(overlap: float, n_pred: int, n_ref: int) -> float:
    if overlap == 0 or n_pred == 0 or n_ref == 0:
        return 0.0
    precision, recall = overlap / n_pred, overlap / n_ref
    return 2 * precision * recall / (precision + recall)


def rouge_n(prediction: str, reference: str, n: int) -> float:
    """ROUGE-N F-measure of one prediction against one reference."""
    p, r = _ngrams(rouge_tokenize(prediction), n), _ngrams(rouge_tokenize(reference), n)
    return _f_measure(sum((p & r).values()), sum(p.values()), sum(r.values()))


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    if not a or not b:
        return 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F-measure: longest common subsequence of the token sequences."""
    p, r = rouge_tokenize(prediction), rouge_tokenize(reference)
    return _f_measure(lcs_length(p, r), len(p), len(r))


def rouge(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """Mean ROUGE-1/2/L F-measures; with several references, the best one per example."""
    _check_lengths(predictions, references)
    if not predictions:
        return {"rouge1": float("nan"), "rouge2": float("nan"), "rougeL": float("nan")}
    out = {}
    for key, fn in (("rouge1", lambda p, r: rouge_n(p, r, 1)),
                    ("rouge2", lambda p, r: rouge_n(p, r, 2)), ("rougeL", rouge_l)):
        out[key] = float(np.mean([max((fn(p, r) for r in refs), default=0.0)
                                  for p, refs in zip(predictions, references)]))
    return out


_BLEU_PUNCT = re.compile(r"([\{-\~\[-\` -\&\(-\+\:-\@\/])")
_BLEU_PERIOD_COMMA = re.compile(r"([^0-9])([\.,])")
_BLEU_COMMA_PERIOD = re.compile(r"([\.,])([^0-9])")
_BLEU_DASH = re.compile(r"([0-9])(-)")


def bleu_tokenize(text: str) -> list[str]:
    """The mteval-v13a tokenization that sacreBLEU uses by default (case kept)."""
    text = text.replace("<skipped>", "").replace("-\n", "").replace("\n", " ")
    if "&" in text:
        text = (text.replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<")
                .replace("&gt;", ">"))
    text = f" {text} "
    text = _BLEU_PUNCT.sub(r" \1 ", text)
    text = _BLEU_PERIOD_COMMA.sub(r"\1 \2 ", text)
    text = _BLEU_COMMA_PERIOD.sub(r" \1 \2", text)
    text = _BLEU_DASH.sub(r"\1 \2 ", text)
    return text.split()


def corpus_bleu(predictions: Sequence[str], references: Sequence[Sequence[str]],
                max_order: int = 4, tokenize: bool = True) -> float:
    """Corpus BLEU (Papineni et al. 2002): clipped n-gram precisions pooled over the corpus,
    geometric mean, brevity penalty against the closest reference length. No smoothing.

    `references[i]` lists every reference for prediction i. With `tokenize=False` the
    strings are split on whitespace only.
    """
    _check_lengths(predictions, references)
    split = bleu_tokenize if tokenize else str.split
    matches = [0] * max_order
    totals = [0] * max_order
    hyp_len = ref_len = 0
    for pred, refs in zip(predictions, references):
        hyp = split(pred)
        ref_toks = [split(r) for r in refs]
        hyp_len += len(hyp)
        if ref_toks:
            ref_len += min((abs(len(r) - len(hyp)), len(r)) for r in ref_toks)[1]
        for n in range(1, max_order + 1):
            h = _ngrams(hyp, n)
            max_ref: collections.Counter = collections.Counter()
            for r in ref_toks:
                max_ref |= _ngrams(r, n)
            matches[n - 1] += sum((h & max_ref).values())
            totals[n - 1] += max(len(hyp) - n + 1, 0)
    if hyp_len == 0 or min(matches) == 0:
        return 0.0
    log_precision = sum(math.log(m / t) for m, t in zip(matches, totals)) / max_order
    bp = 1.0 if hyp_len > ref_len else math.exp(1 - ref_len / hyp_len)
    return bp * math.exp(log_precision)


# ---------------------------------------------------------------------------------------


def _check_lengths(a: Sequence, b: Sequence) -> None:
    if len(a) != len(b):
        raise ValueError(f"{len(a)} predictions but {len(b)} targets")


def _floats(x: Sequence[float]) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)
