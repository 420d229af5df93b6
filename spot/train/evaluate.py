"""Validation scoring during and after training, and batched prediction for `spot eval` and
`spot predict`.

Closed label sets (classification tasks) are scored by rank classification: each label's
log-likelihood under the model, argmax. Open-ended targets use greedy decoding with the
key/value cache. Batches are padded to a fixed size so each shape compiles once.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import jax
import numpy as np

from spot.model.api import batch_pad
from spot.model.decode import EOS_ID, greedy_decode, score_candidates
from spot.train.step import split_trainable


def _chunks(n: int, size: int):
    for start in range(0, n, size):
        yield start, min(start + size, n)


def _pad_rows(x: np.ndarray, rows: int) -> np.ndarray:
    if x.shape[0] == rows:
        return x
    pad = np.zeros((rows - x.shape[0],) + x.shape[1:], x.dtype)
    return np.concatenate([x, pad], axis=0)


def trim_at_eos(ids: Sequence[int]) -> list[int]:
    out = []
    for i in ids:
        i = int(i)
        if i == EOS_ID:
            break
        if i != 0:
            out.append(i)
    return out


@dataclasses.dataclass(frozen=True)
class LabelSet:
    """A closed label set for rank classification: each label's text and token ids."""

    words: Sequence[str]
    token_ids: Sequence[Sequence[int]]


def _prompt_rows(prompt, start: int, end: int, batch_size: int):
    """The prompt for rows [start, end): shared as is, or per example padded to the batch."""
    if prompt is None or np.ndim(prompt) != 3:
        return prompt
    return _pad_rows(np.asarray(prompt[start:end]), batch_size)


def predict(module, params, prompt, encoder_input_tokens: np.ndarray, *, vocab: Any = None,
            labels: LabelSet | None = None, batch_size: int = 64,
            max_length: int = 32) -> tuple[list[str], np.ndarray]:
    """Predictions (text) and their log-likelihood scores for every input row.

    `prompt` is None, [L, E] shared, or [N, L, E] per example (mixed-task batches).
    With `labels` it ranks them; otherwise it decodes greedily (up to `max_length` tokens).
    """
    n = encoder_input_tokens.shape[0]
    texts: list[str] = []
    scores = np.zeros(n, np.float32)
    cands = batch_pad(labels.token_ids) if labels is not None else None
    for start, end in _chunks(n, batch_size):
        enc = _pad_rows(encoder_input_tokens[start:end], batch_size)
        p = _prompt_rows(prompt, start, end, batch_size)
        if cands is not None:
            ll = np.asarray(score_candidates(module, params, enc, p, cands))[: end - start]
            best = ll.argmax(axis=-1)
            texts.extend(labels.words[b] for b in best)
            scores[start:end] = ll[np.arange(end - start), best]
        else:
            tokens, logp = greedy_decode(module, params, enc, p, max_length=max_length)
            tokens = np.asarray(tokens)[: end - start]
            texts.extend(vocab.decode(trim_at_eos(row)) for row in tokens)
            scores[start:end] = np.asarray(logp)[: end - start]
    return texts, scores


def eval_method(task_info: Any, requested: str) -> str:
    if requested == "rank" and not task_info.label_words:
        from spot.errors import ConfigError

        raise ConfigError(f"task {task_info.name} has no closed label set: rank classification "
                          f"needs one; use eval_method = decode")
    if requested == "auto":
        return "rank" if task_info.label_words else "decode"
    return requested


def make_evaluator(module, eval_sets: dict[str, Any], *, vocab: Any, method: str = "auto",
                   batch_size: int = 64, max_length: int = 32):
    """`evaluate(trainable, frozen) -> (metrics, score)`; for several tasks (a mixture) the metrics
    are per task and the score is the mean of the tasks' scores."""
    from spot.data import pipeline

    def evaluate(trainable: dict, frozen: dict) -> tuple[dict[str, Any], float]:
        params, prompt = split_trainable(trainable, frozen)
        if prompt is not None:
            prompt = jax.device_get(prompt)
        per_task: dict[str, dict[str, float]] = {}
        for name, es in eval_sets.items():
            how = eval_method(es.task, method)
            labels = (LabelSet(es.task.label_words, es.label_token_ids) if how == "rank"
                      else None)
            texts, _ = predict(module, params, prompt, es.encoder_input_tokens, vocab=vocab,
                               labels=labels, batch_size=batch_size, max_length=max_length)
            per_task[name] = {k: float(v) for k, v in pipeline.score(name, texts, es).items()}
        score = float(np.mean([m["score"] for m in per_task.values()]))
        if len(per_task) == 1:
            return next(iter(per_task.values())), score
        return per_task, score

    return evaluate
