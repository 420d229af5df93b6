"""seqio Tasks and Mixtures built on demand, one per (task, vocabulary).

For users of the seqio/t5x ecosystem: the same text examples as `spot.data.pipeline`
(TFDS tasks are read through `seqio.TfdsDataSource`), tokenized by seqio's own
preprocessors with the vocabulary given. Nothing is added to seqio's global registries, so
any number of vocabularies can coexist. seqio's metric functions see only target text;
`spot.data.pipeline.score` also uses per-example fields (all gold answers, MultiRC groups).
"""

from __future__ import annotations

import re
import threading
from typing import Any

from spot.data import registry, scoring
from spot.data.vocab import vocab_key

_CACHE: dict[tuple[str, str], Any] = {}
_LOCK = threading.Lock()


def seqio_name(name: str, vocab: Any) -> str:
    """A seqio-legal name (letters, digits, `_ . :`) that also names the vocabulary."""
    return "spot." + re.sub(r"[^\w.:]", "_", name) + "." + vocab_key(vocab)


def _dataset_fn(info: registry.TaskInfo):
    from spot.quiet import import_tensorflow

    tf = import_tensorflow()

    spec = {"inputs": tf.TensorSpec((), tf.string), "targets": tf.TensorSpec((), tf.string)}

    def dataset_fn(split: str, shuffle_files: bool, seed: int | None = None) -> tf.data.Dataset:
        def gen():
            for ex in info.iter_examples(split):
                yield {"inputs": ex["inputs"], "targets": ex["targets"]}

        return tf.data.Dataset.from_generator(gen, output_signature=spec)

    return dataset_fn


def _metric_fn(info: registry.TaskInfo):
    def metric(targets, predictions) -> dict[str, float]:
        return scoring.compute(info.metrics, list(predictions), list(targets), [],
                               label_words=info.label_words, postprocessor="strip")

    return metric


def seqio_task(name: str, vocab: Any):
    """The seqio Task (or Mixture, for a mixture name) of `name` tokenized with `vocab`."""
    from spot.quiet import import_seqio

    seqio = import_seqio()

    info = registry.get(name)
    if info.is_mixture:
        return seqio_mixture(name, vocab)
    key = (name, vocab_key(vocab))
    with _LOCK:
        if key in _CACHE:
            return _CACHE[key]
    sizes = {}
    for split in info.splits:
        n = info.num_examples(split)
        if n:
            sizes[split] = int(n)
    features = {"inputs": seqio.Feature(vocab, add_eos=True, required=False),
                "targets": seqio.Feature(vocab, add_eos=True)}
    task = seqio.Task(
        seqio_name(name, vocab),
        source=seqio.FunctionDataSource(_dataset_fn(info), splits=info.splits,
                                        num_input_examples=sizes or None),
        output_features=features,
        preprocessors=[seqio.preprocessors.tokenize, seqio.CacheDatasetPlaceholder(),
                       seqio.preprocessors.append_eos_after_trim],
        metric_fns=[_metric_fn(info)] if info.metrics else [],
        shuffle_buffer_size=10_000,
    )
    with _LOCK:
        return _CACHE.setdefault(key, task)


def seqio_mixture(name: str, vocab: Any, K: int | None = None):
    """A seqio Mixture with the examples-proportional rates min(n, K)."""
    from spot.quiet import import_seqio

    seqio = import_seqio()

    info = registry.get(name)
    if not info.is_mixture:
        return seqio_task(name, vocab)
    rates = info.rates(K)
    key = (f"{name}@{K}", vocab_key(vocab))
    with _LOCK:
        if key in _CACHE:
            return _CACHE[key]
    mixture = seqio.Mixture(seqio_name(name, vocab),
                            [(seqio_task(m, vocab), rates[m]) for m in info.members])
    with _LOCK:
        return _CACHE.setdefault(key, mixture)
