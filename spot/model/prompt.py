"""Soft prompts: initializers, the `--init` file check and the optional prompt-encoder
reparameterization (the array check itself is `spot.model.prompt_check.validate_prompt`).

A prompt is an [L, E] float32 array prepended to the embedded encoder input (see
`spot.model.t5.Encoder`). The trainable state of prompt tuning is a small pytree:
`{"prompt": [L, E]}`, plus `{"prompt_encoder": {...}}` when the prompt is reparameterized
through a two-layer feed-forward network (the learned-transferability follow-up). Everything
else (gradients, optimizer state, checkpoints) follows from that pytree.

Initializers work on host numpy arrays and take an explicit seed, so a run's initial prompt
is reproducible from its config alone.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol, Sequence, runtime_checkable

import numpy as np

from spot.errors import ConfigError, PromptError
from spot.model.prompt_check import validate_prompt

# The initializer names (`spot.config` takes its `prompt.init` choices from here).
INITIALIZERS = ("uniform", "sampled_vocab", "class_labels", "text", "file")
DEFAULT_POPULATION = 5000  # the reference samples from the 5,000 most common pieces

__all__ = ["INITIALIZERS", "PromptSettings", "effective_prompt", "init_class_labels",
           "init_from_text", "init_prompt_encoder", "init_sampled_vocab", "init_uniform",
           "load_init_prompt", "make_initial_prompt", "resize_prompt", "validate_prompt"]


@runtime_checkable
class PromptSettings(Protocol):
    """What the initializers read from a `spot.config.PromptConfig` (the type callers pass;
    spot.model does not import spot.config, which derives its choice lists from here)."""

    @property
    def length(self) -> int: ...
    @property
    def init(self) -> str: ...
    @property
    def init_path(self) -> str: ...
    @property
    def init_text(self) -> str: ...
    @property
    def resize(self) -> bool: ...
    @property
    def population(self) -> int: ...
    @property
    def uniform_scale(self) -> float: ...


def init_uniform(seed: int, length: int, emb_dim: int, scale: float = 0.5) -> np.ndarray:
    """Uniform in [-scale, scale] (prompt tuning's random-uniform init, scale 0.5)."""
    rng = np.random.default_rng(seed)
    return rng.uniform(-scale, scale, size=(length, emb_dim)).astype(np.float32)


def init_sampled_vocab(seed: int, embedding: np.ndarray, length: int,
                       population: int = DEFAULT_POPULATION) -> np.ndarray:
    """Rows of the embedding table drawn from the first `population` ids.

    SentencePiece ids are ordered by frequency, so the first rows are the most common pieces.
    Draws without replacement unless the prompt is longer than the population.
    """
    population = min(int(population), embedding.shape[0])
    if population <= 0:
        raise ConfigError(f"sampled_vocab population must be positive, got {population}")
    rng = np.random.default_rng(seed)
    ids = rng.choice(population, size=length, replace=length > population)
    return np.asarray(embedding[ids], dtype=np.float32)


def _encode(vocab: Any, text: str) -> list[int]:
    ids = list(vocab.encode(text))
    if not ids:
        raise ConfigError(f"text {text!r} encodes to no tokens")
    return ids


def init_class_labels(seed: int, embedding: np.ndarray, vocab: Any, labels: Sequence[str],
                      length: int, fallback: str = "sampled_vocab",
                      population: int = DEFAULT_POPULATION) -> np.ndarray:
    """Each label's sub-token embeddings averaged into the first positions; `fallback` fills
    the rest (sampled vocabulary in the prompt-tuning recipe)."""
    if not labels:
        raise ConfigError("class_labels init needs at least one label word")
    prompt = _fallback(fallback, seed, embedding, length, population)
    for i, label in enumerate(list(labels)[:length]):
        prompt[i] = np.asarray(embedding[_encode(vocab, label)], np.float32).mean(axis=0)
    return prompt


def init_from_text(seed: int, embedding: np.ndarray, vocab: Any, text: str, length: int,
                   fallback: str = "sampled_vocab",
                   population: int = DEFAULT_POPULATION) -> np.ndarray:
    """The embeddings of `text`'s pieces in order, truncated to `length`; `fallback` fills
    the rest."""
    prompt = _fallback(fallback, seed, embedding, length, population)
    ids = _encode(vocab, text)[:length]
    prompt[: len(ids)] = np.asarray(embedding[ids], np.float32)
    return prompt


def _fallback(kind: str, seed: int, embedding: np.ndarray, length: int,
              population: int) -> np.ndarray:
    if kind == "sampled_vocab":
        return init_sampled_vocab(seed, embedding, length, population)
    if kind == "uniform":
        return init_uniform(seed, length, embedding.shape[1])
    raise ConfigError(f"unknown fallback initializer {kind!r}; use sampled_vocab or uniform")


def resize_prompt(prompt: np.ndarray, length: int, *, seed: int,
                  embedding: np.ndarray | None = None) -> np.ndarray:
    """Truncate a longer prompt, or pad a shorter one with sampled-vocabulary rows."""
    if prompt.shape[0] >= length:
        return prompt[:length].copy()
    extra = length - prompt.shape[0]
    if embedding is not None:
        pad = init_sampled_vocab(seed, embedding, extra)
    else:
        pad = init_uniform(seed, extra, prompt.shape[1])
    return np.concatenate([prompt, pad], axis=0)


# ---------------------------------------------------------------------------------------
# Reparameterization: prompt = input + W2 tanh(W1 input + b1) + b2 (hidden 200).
# ---------------------------------------------------------------------------------------

def init_prompt_encoder(seed: int, emb_dim: int, hidden: int = 200) -> dict:
    """Parameters of the two-layer feed-forward prompt encoder.

    The output layer starts at zero, so the reparameterized prompt initially equals its
    input (whatever initializer produced it); training then moves through the encoder.
    """
    rng = np.random.default_rng(seed)
    w1 = rng.normal(0.0, 1.0 / np.sqrt(emb_dim), size=(emb_dim, hidden)).astype(np.float32)
    return {"dense_0": {"kernel": w1, "bias": np.zeros(hidden, np.float32)},
            "dense_1": {"kernel": np.zeros((hidden, emb_dim), np.float32),
                        "bias": np.zeros(emb_dim, np.float32)}}


def effective_prompt(trainable: dict) -> Any:
    """The [L, E] prompt the encoder sees, from the trainable pytree (works under jit)."""
    prompt = trainable["prompt"]
    enc = trainable.get("prompt_encoder")
    if enc is None:
        return prompt
    import jax.numpy as jnp

    h = jnp.tanh(prompt @ enc["dense_0"]["kernel"] + enc["dense_0"]["bias"])
    return prompt + h @ enc["dense_1"]["kernel"] + enc["dense_1"]["bias"]


def load_init_prompt(config: PromptSettings, emb_dim: int,
                     load: Callable[[str], Any] | None = None) -> np.ndarray:
    """The `init = file` prompt checked against the model: float32 [L, emb_dim], and L equal
    to `config.length` unless `config.resize` (then `make_initial_prompt` truncates or pads
    it). `spot.train.run.check_init_prompt` runs this before anything compiles."""
    path = config.init_path
    if not path:
        raise ConfigError("file init needs a path (prompt.init_path, --init FILE)")
    if load is None:
        from spot.model.prompt_files import load_prompt as load
    prompt = validate_prompt(load(path), emb_dim, source=str(path))
    if prompt.shape[0] != config.length and not config.resize:
        raise PromptError(
            f"{path}: length {prompt.shape[0]} differs from the configured prompt length "
            f"{config.length}; pass --resize-prompt to truncate or pad it")
    return prompt


def make_initial_prompt(config: PromptSettings, *, embedding: np.ndarray, seed: int,
                        vocab: Any = None, labels: Sequence[str] | None = None,
                        load: Callable[[str], Any] | None = None) -> np.ndarray:
    """The initial prompt `config.init` names, a validated float32 [config.length, E].

    `embedding` is the model's token table [V, E]; `vocab` encodes `config.init_text` and the
    task's label words `labels` (class_labels); `load` reads an init file (default
    `spot.model.prompt_files.load_prompt`). Fallback rows are sampled-vocabulary rows.
    """
    kind, length, population = config.init, config.length, config.population
    emb_dim = embedding.shape[1]
    if kind == "uniform":
        prompt = init_uniform(seed, length, emb_dim, config.uniform_scale)
    elif kind == "sampled_vocab":
        prompt = init_sampled_vocab(seed, embedding, length, population)
    elif kind == "class_labels":
        if vocab is None or not labels:
            raise ConfigError("class_labels init needs a vocabulary and the task's label words")
        prompt = init_class_labels(seed, embedding, vocab, labels, length, population=population)
    elif kind == "text":
        if vocab is None or not config.init_text:
            raise ConfigError("text init needs a vocabulary and a non-empty text")
        prompt = init_from_text(seed, embedding, vocab, config.init_text, length,
                                population=population)
    elif kind == "file":
        prompt = load_init_prompt(config, emb_dim, load)
        if prompt.shape[0] != length:
            prompt = resize_prompt(prompt, length, seed=seed, embedding=embedding)
    else:
        raise ConfigError(f"unknown prompt initializer {kind!r}; known: {', '.join(INITIALIZERS)}")
    return validate_prompt(prompt, emb_dim, length=length)
