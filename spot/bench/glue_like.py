"""Synthetic GLUE-shaped tasks for measuring the input pipeline without the real data.

Each task copies a GLUE task's text format, label words and typical field lengths (in
words); the words are whole-word pieces of the vocabulary in use, so token counts are
realistic for it. The examples go through the same registry and pipeline as real tasks.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from spot.data import registry

# task -> (fields with mean word counts, label words), after GLUE's formats and lengths.
GLUE_SHAPES: dict[str, tuple[tuple[tuple[str, int], ...], tuple[str, ...]]] = {
    "cola": ((("sentence", 9),), ("unacceptable", "acceptable")),
    "sst2": ((("sentence", 10),), ("negative", "positive")),
    "mrpc": ((("sentence1", 22), ("sentence2", 22)), ("not_equivalent", "equivalent")),
    "qqp": ((("question1", 11), ("question2", 11)), ("not_duplicate", "duplicate")),
    "stsb": ((("sentence1", 10), ("sentence2", 10)), ("0.0", "2.4", "5.0")),
    "mnli": ((("hypothesis", 11), ("premise", 22)), ("entailment", "neutral", "contradiction")),
    "qnli": ((("question", 10), ("sentence", 28)), ("entailment", "not_entailment")),
    "rte": ((("sentence1", 43), ("sentence2", 9)), ("entailment", "not_entailment")),
}


def _words(vocab: Any, limit: int = 8000) -> list[str]:
    pieces = []
    tok = getattr(vocab, "tokenizer", None)
    size = tok.GetPieceSize() if tok is not None else 0
    for i in range(3, min(size, limit)):
        p = tok.IdToPiece(i)
        if p.startswith("\u2581") and p[1:].isalpha() and len(p) > 2:
            pieces.append(p[1:])
    return pieces or ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]


def register_glue_like(vocab: Any, *, examples_per_task: int = 5000, seed: int = 0) -> str:
    """Register 8 synthetic GLUE-shaped tasks and their mixture; the mixture's name."""
    words = np.array(_words(vocab))
    names = []
    for task, (fields, labels) in GLUE_SHAPES.items():
        name = f"synthetic_{task}_{examples_per_task}_{seed}"

        def load(split: str, task=task, fields=fields, labels=labels) -> list[dict[str, str]]:
            rng = np.random.default_rng([seed, len(task), sum(map(ord, task)),
                                         0 if split == "train" else 1])
            n = examples_per_task if split == "train" else max(1, examples_per_task // 10)
            out = []
            for _ in range(n):
                parts = [task]
                for field, mean in fields:
                    k = max(1, int(rng.poisson(mean)))
                    parts.append(f"{field}: " + " ".join(words[rng.integers(0, len(words), k)]))
                out.append({"inputs": " ".join(parts),
                            "targets": labels[int(rng.integers(0, len(labels)))]})
            return out

        registry.register_text_task(registry.TextTaskSpec(
            name, family="synthetic", load_split=load, metrics=("accuracy",),
            label_words=labels, source="offline",
            description=f"synthetic text shaped like GLUE {task}",
            num_examples={"train": examples_per_task,
                          "validation": max(1, examples_per_task // 10)}))
        names.append(name)
    mixture = f"synthetic_glue_{examples_per_task}_{seed}"
    registry.register_mixture(mixture, names, family="synthetic")
    return mixture
