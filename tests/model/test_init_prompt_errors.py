"""A bad `--init` prompt is one error, `PromptError` with one message, whether the run's early
check (`spot.train.run.check_init_prompt`, before anything compiles) or the initializer
(`spot.model.prompt.make_initial_prompt`) finds it. Before the one validator, the early check
raised `ConfigError` for the wrong width the initializer reported as `PromptError`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from spot.config import RunConfig, apply_overrides
from spot.errors import PromptError
from spot.model.prompt import make_initial_prompt
from spot.train.run import check_init_prompt

EMB = np.arange(10 * 6, dtype=np.float32).reshape(10, 6)  # a model with emb_dim 6


def _raised(fn) -> Exception:
    """Whatever `fn` raises (the tests then check its exact type)."""
    with pytest.raises(Exception) as info:
        fn()
    return info.value


def _init_config(path: Path, length: int = 4) -> RunConfig:
    return apply_overrides(RunConfig(), {"prompt.init": "file", "prompt.init_path": str(path),
                                         "prompt.length": length})


def _raised(fn) -> Exception:
    """Whatever `fn` raises (the tests then check its exact type)."""
    with pytest.raises(Exception) as info:
        fn()
    return info.value


@pytest.mark.parametrize("shape, message", [
    ((4, 8), "prompt width 8 does not match the model's embedding size 6"),
    ((5, 6), "length 5 differs from the configured prompt length 4; pass --resize-prompt"),
])
def test_a_bad_init_prompt_is_the_same_error_before_and_at_initialization(tmp_path, shape, message):
    # Before: check_init_prompt raised ConfigError where make_initial_prompt raised PromptError.
    path = tmp_path / "init.npy"
    np.save(path, np.ones(shape, np.float32))
    config = _init_config(path)
    from_check = _raised(lambda: check_init_prompt(config, EMB.shape[1]))
    assert type(from_check) is PromptError, repr(from_check)
    from_init = _raised(lambda: make_initial_prompt(config.prompt, embedding=EMB, seed=0))
    assert type(from_init) is PromptError, repr(from_init)
    assert str(from_check) == str(from_init) and message in str(from_check)


def test_resize_lets_another_length_through_both(tmp_path):
    path = tmp_path / "init.npy"
    np.save(path, np.ones((5, 6), np.float32))
    config = apply_overrides(_init_config(path), {"prompt.resize": "true"})
    check_init_prompt(config, EMB.shape[1])
    assert make_initial_prompt(config.prompt, embedding=EMB, seed=0).shape == (4, 6)
