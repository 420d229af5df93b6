"""Soft prompts: initializers, validation and the optional prompt-encoder reparameterization.

A prompt is an [L, E] float32 array prepended to the embedded encoder input (see
`spot.model.t5.Encoder`). The trainable state of prompt tuning is a small pytree:
`{"prompt": [L, E]}`, plus `{"prompt_encoder": {...}}` when the prompt is reparameterized
through a two-layer feed-forward network (the learned-transferability follow-up). Everything
else (gradients, optimizer state, checkpoints) follows from that pytree.

Initializers work on host numpy arrays and take an explicit seed, so a run's initial prompt
is reproducible from its config alone.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from spot.errors import ConfigError, PromptError

INITIALIZERS = ("uniform", "sampled_vocab", "class_labels", "text", "file")
DEFAULT_POPULATION = 5000  # the reference samples from the 5,000 most common pieces


def validate_prompt(prompt: Any, emb_dim: int | None = None, *, length: int | None = None,
                    source: str = "prompt") -> np.ndarray:
    """Return `prompt` as float32 [L, E] (or [B, L, E]) after shape and finiteness checks."""
    try:
        arr = np.asarray(prompt)
    except Exception as e:  # noqa: BLE001 - anything unconvertible is a user error
        raise PromptError(f"{source}: cannot be read as an array ({e})") from None
    if arr.ndim not in (2, 3):
        raise PromptError(f"{source}: expected shape [L, E] (or [B, L, E]), got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise PromptError(f"{source}: expected a floating-point array, got dtype {arr.dtype}")
    arr = arr.astype(np.float32)
    if arr.shape[-2] == 0:
        raise PromptError(f"{source}: has length 0")
    if emb_dim is not None and arr.shape[-1] != emb_dim:
        raise PromptError(
            f"{source}: width {arr.shape[-1]} does not match the model's embedding size "
            f"{emb_dim}")
    if length is not None and arr.shape[-2] != length:
        raise PromptError(f"{source}: length {arr.shape[-2]} does not match the expected {length}")
    if not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise PromptError(f"{source}: holds {bad} non-finite values (NaN or Inf)")
    return arr


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


def make_initial_prompt(kind: str, *, seed: int, length: int, embedding: np.ndarray,
                        vocab: Any = None, labels: Sequence[str] | None = None,
                        text: str | None = None, path: str | None = None,
                        load: Callable[[str], np.ndarray] | None = None,
                        resize: bool = False, scale: float = 0.5,
                        population: int = DEFAULT_POPULATION,
                        fallback: str = "sampled_vocab") -> np.ndarray:
    """Dispatch on the initializer name; every path returns a validated float32 [L, E]."""
    emb_dim = embedding.shape[1]
    if kind == "uniform":
        prompt = init_uniform(seed, length, emb_dim, scale)
    elif kind == "sampled_vocab":
        prompt = init_sampled_vocab(seed, embedding, length, population)
    elif kind == "class_labels":
        if vocab is None or not labels:
            raise ConfigError("class_labels init needs a vocabulary and the task's label words")
        prompt = init_class_labels(seed, embedding, vocab, labels, length, fallback, population)
    elif kind == "text":
        if vocab is None or not text:
            raise ConfigError("text init needs a vocabulary and a non-empty text")
        prompt = init_from_text(seed, embedding, vocab, text, length, fallback, population)
    elif kind == "file":
        if path is None:
            raise ConfigError("file init needs a path")
        if load is None:
            from spot.model.prompt_files import load_prompt as load
        prompt = validate_prompt(load(path), source=str(path))
        if prompt.ndim != 2:
            raise PromptError(f"{path}: expected [L, E], got {prompt.shape}")
        if prompt.shape[1] != emb_dim:
            raise PromptError(
                f"{path}: width {prompt.shape[1]} does not match the model's embedding size "
                f"{emb_dim}")
        if prompt.shape[0] != length:
            if not resize:
                raise PromptError(
                    f"{path}: length {prompt.shape[0]} differs from the configured prompt "
                    f"length {length}; pass --resize-prompt to truncate or pad it")
            prompt = resize_prompt(prompt, length, seed=seed, embedding=embedding)
    else:
        raise ConfigError(f"unknown prompt initializer {kind!r}; known: {', '.join(INITIALIZERS)}")
    return validate_prompt(prompt, emb_dim, length=length)
