"""Prompt initializers, validation and the prompt-encoder reparameterization."""

import dataclasses

import numpy as np
import pytest

from spot.config import PromptConfig
from spot.errors import ConfigError, PromptError
from spot.model.prompt import (
    PromptSettings,
    effective_prompt,
    init_class_labels,
    init_prompt_encoder,
    init_sampled_vocab,
    init_uniform,
    make_initial_prompt,
    validate_prompt,
)


class FakeVocab:
    """Maps each character to an id, so label sub-token averages are easy to compute by hand."""

    def encode(self, text):
        return [ord(c) - 90 for c in text]


EMB = np.arange(40 * 6, dtype=np.float32).reshape(40, 6)


def test_uniform_range_and_seed():
    a = init_uniform(0, 100, 8)
    assert a.shape == (100, 8) and a.dtype == np.float32
    assert a.min() >= -0.5 and a.max() <= 0.5 and a.std() > 0.2
    np.testing.assert_array_equal(a, init_uniform(0, 100, 8))
    assert not np.array_equal(a, init_uniform(1, 100, 8))


def test_sampled_vocab_draws_rows_from_population_without_replacement():
    p = init_sampled_vocab(0, EMB, 10, population=20)
    rows = [int(r[0] // 6) for r in p]
    assert all(0 <= r < 20 for r in rows) and len(set(rows)) == 10
    for r, row in zip(rows, p):
        np.testing.assert_array_equal(row, EMB[r])
    # Longer than the population: falls back to drawing with replacement.
    assert init_sampled_vocab(0, EMB, 30, population=5).shape == (30, 6)


def test_class_labels_average_subtokens_then_fallback():
    p = init_class_labels(0, EMB, FakeVocab(), ["ab", "c"], 5, population=10)
    np.testing.assert_allclose(p[0], EMB[[7, 8]].mean(0))  # 'a' -> 7, 'b' -> 8
    np.testing.assert_allclose(p[1], EMB[9])
    assert all(int(r[0] // 6) < 10 for r in p[2:])  # sampled-vocabulary fallback


def _settings(**changes):
    return dataclasses.replace(PromptConfig(), **changes)


def _npy(path):
    return np.load(path, allow_pickle=False)


def test_file_init_checks_width_and_length(tmp_path):
    path = tmp_path / "p.npy"
    np.save(path, np.ones((4, 6), np.float32))
    file4 = _settings(init="file", init_path=str(path), length=4)
    loaded = make_initial_prompt(file4, embedding=EMB, seed=0, load=_npy)
    assert loaded.shape == (4, 6)
    with pytest.raises(PromptError, match="length 4 differs .* --resize-prompt"):
        make_initial_prompt(_settings(init="file", init_path=str(path), length=6),
                            embedding=EMB, seed=0, load=_npy)
    resized = make_initial_prompt(_settings(init="file", init_path=str(path), length=6, resize=True),
                                  embedding=EMB, seed=0, load=_npy)
    np.testing.assert_array_equal(resized[:4], 1.0)
    np.save(path, np.ones((4, 5), np.float32))
    with pytest.raises(PromptError, match="width 5 does not match the model's embedding size 6"):
        make_initial_prompt(file4, embedding=EMB, seed=0, load=_npy)


def test_initializers_read_the_prompt_config():
    uniform = make_initial_prompt(_settings(init="uniform", length=3, uniform_scale=0.01),
                                  embedding=EMB, seed=1)
    np.testing.assert_array_equal(uniform, init_uniform(1, 3, 6, 0.01))
    sampled = make_initial_prompt(_settings(length=5, population=7), embedding=EMB, seed=2)
    np.testing.assert_array_equal(sampled, init_sampled_vocab(2, EMB, 5, population=7))
    labels = make_initial_prompt(_settings(init="class_labels", length=5, population=10),
                                 embedding=EMB, seed=0, vocab=FakeVocab(), labels=["ab", "c"])
    np.testing.assert_array_equal(labels, init_class_labels(0, EMB, FakeVocab(), ["ab", "c"], 5,
                                                            population=10))
    text = make_initial_prompt(_settings(init="text", init_text="abc", length=4), embedding=EMB,
                               seed=0, vocab=FakeVocab())
    np.testing.assert_array_equal(text[:3], EMB[[7, 8, 9]])
    with pytest.raises(ConfigError, match="text init needs"):
        make_initial_prompt(_settings(init="text", length=4), embedding=EMB, seed=0,
                            vocab=FakeVocab())
    with pytest.raises(ConfigError, match="file init needs a path"):
        make_initial_prompt(_settings(init="file", length=4), embedding=EMB, seed=0)
    assert isinstance(PromptConfig(), PromptSettings)


def test_validation_errors():
    with pytest.raises(PromptError, match="expected a 2-D"):
        validate_prompt(np.ones(5))
    with pytest.raises(PromptError, match="non-finite"):
        validate_prompt(np.array([[1.0, np.inf]]))
    with pytest.raises(PromptError, match="floating-point"):
        validate_prompt(np.ones((2, 2), np.int32))
    assert validate_prompt(np.ones((2, 3, 4)), batched=True).shape == (2, 3, 4)
    with pytest.raises(PromptError, match="expected a 2-D .* or 3-D"):
        validate_prompt(np.ones((1, 2, 3, 4)), batched=True)
    with pytest.raises(ConfigError, match="unknown prompt initializer"):
        make_initial_prompt(_settings(init="zeros", length=2), embedding=EMB, seed=0)


def test_prompt_encoder_starts_at_identity_and_is_differentiable():
    import jax
    import jax.numpy as jnp

    base = init_uniform(0, 5, 6)
    trainable = {"prompt": jnp.asarray(base),
                 "prompt_encoder": jax.tree_util.tree_map(jnp.asarray, init_prompt_encoder(0, 6))}
    np.testing.assert_allclose(effective_prompt(trainable), base, atol=1e-7)
    grads = jax.grad(lambda t: jnp.sum(effective_prompt(t) ** 2))(trainable)
    assert float(jnp.abs(grads["prompt_encoder"]["dense_1"]["kernel"]).sum()) > 0
