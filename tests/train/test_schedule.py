"""`optimizer.schedule`: the rate at each step against the closed forms, the paper's constant
rate unchanged, and what a schedule does to a run (it stops moving at the end; it resumes
exactly; changing it is refused on resume; old run folders still resume)."""

from __future__ import annotations

import json
import math

import jax
import numpy as np
import pytest

from spot.config import OptimizerConfig, RunConfig, apply_overrides, validate
from spot.errors import ConfigError
from spot.model.api import random_t5
from spot.model.prompt import init_uniform
from spot.model.prompt_files import load_prompt
from spot.train.loop import RunPieces, run_loop, trainable_from_prompt
from spot.train.step import learning_rate_schedule, make_optimizer

from .synthetic import Killed, dying_batches, loop_config, synthetic_batches


def _expected(schedule: str, lr: float, warmup: int, decay: int, t: int) -> float:
    """The schedule written out by hand (the reference the optax composition must meet)."""
    if t < warmup:
        return lr * t / warmup
    if schedule == "constant":
        return lr
    frac = min(1.0, (t - warmup) / (decay - warmup))
    return lr * (1 - frac) if schedule == "linear" else lr * 0.5 * (1 + math.cos(math.pi * frac))


@pytest.mark.parametrize("schedule,warmup", [("linear", 0), ("linear", 7), ("cosine", 0),
                                             ("cosine", 7), ("constant", 7)])
def test_rate_at_each_step_matches_the_closed_form(schedule, warmup):
    cfg = OptimizerConfig(learning_rate=0.3, factored=False, schedule=schedule,
                          warmup_steps=warmup, decay_steps=40)
    rate = learning_rate_schedule(cfg)
    for t in range(0, 50):
        assert float(rate(t)) == pytest.approx(_expected(schedule, 0.3, warmup, 40, t),
                                               abs=1e-7), t


def test_the_papers_constant_rate_keeps_no_step_count():
    assert learning_rate_schedule(OptimizerConfig(learning_rate=0.3, factored=False)) is None
    params = {"prompt": np.ones((4, 8), np.float32)}
    plain = jax.tree_util.tree_leaves(make_optimizer(OptimizerConfig()).init(params))
    sched = jax.tree_util.tree_leaves(
        make_optimizer(OptimizerConfig(schedule="linear", decay_steps=10)).init(params))
    assert len(sched) == len(plain) + 1  # only a schedule adds its count


def test_decay_steps_default_to_the_runs_steps_and_bad_values_are_refused():
    base = {"data.task": "x", "train.steps": 300}
    cfg = validate(apply_overrides(RunConfig(), {**base, "optimizer.schedule": "cosine"}))
    assert cfg.optimizer.decay_steps == 300
    assert validate(apply_overrides(RunConfig(), base)).optimizer.decay_steps == 0
    with pytest.raises(ConfigError, match="optimizer.schedule must be one of"):
        validate(apply_overrides(RunConfig(), {**base, "optimizer.schedule": "step"}))
    with pytest.raises(ConfigError, match="decay_steps must be above optimizer.warmup_steps"):
        validate(apply_overrides(RunConfig(), {**base, "optimizer.schedule": "linear",
                                               "optimizer.warmup_steps": 300}))
    with pytest.raises(ConfigError, match="warmup_steps must be >= 0"):
        validate(apply_overrides(RunConfig(), {**base, "optimizer.warmup_steps": -1}))


@pytest.fixture(scope="module")
def t5():
    return random_t5("test_tiny", seed=0)


def _run(config, t5, batches=None):
    prompt = init_uniform(0, config.prompt.length, t5.config.emb_dim)
    pieces = RunPieces(out_dir=config.train.out_dir, module=t5.module, frozen=t5.params,
                       initial_trainable=lambda: trainable_from_prompt(
                           prompt, reparameterize=False, hidden=8, seed=0),
                       batches=batches or synthetic_batches(), metadata={"task": "synthetic"})
    return run_loop(config, pieces, log=lambda s: None)


_LINEAR = {"optimizer.schedule": "linear", "optimizer.decay_steps": 8,
           "optimizer.weight_decay": 0.0}


def test_a_decayed_run_stops_moving_once_the_rate_reaches_zero(tmp_path, t5):
    """Steps past decay_steps update nothing (weight decay off), so 12 steps end where 8 do;
    under the constant rate they do not."""
    eight = _run(loop_config(tmp_path / "a", **{**_LINEAR, "train.steps": 8}), t5)
    twelve = _run(loop_config(tmp_path / "b", **{**_LINEAR, "train.steps": 12}), t5)
    np.testing.assert_array_equal(load_prompt(eight.prompt_paths["final"]),
                                  load_prompt(twelve.prompt_paths["final"]))
    const = {"optimizer.weight_decay": 0.0}
    c8 = _run(loop_config(tmp_path / "c", **{**const, "train.steps": 8}), t5)
    c12 = _run(loop_config(tmp_path / "d", **{**const, "train.steps": 12}), t5)
    assert not np.array_equal(load_prompt(c8.prompt_paths["final"]),
                              load_prompt(c12.prompt_paths["final"]))
    # And the decayed run is not the constant one: the rate did change the updates.
    assert not np.array_equal(load_prompt(eight.prompt_paths["final"]),
                              load_prompt(c8.prompt_paths["final"]))


def test_a_scheduled_run_resumes_exactly_and_refuses_another_schedule(tmp_path, t5):
    cfg = {"optimizer.schedule": "cosine", "optimizer.warmup_steps": 2}
    straight = _run(loop_config(tmp_path / "a", **cfg), t5)
    with pytest.raises(Killed):
        _run(loop_config(tmp_path / "b", **cfg), t5, batches=dying_batches(6))
    resumed = _run(loop_config(tmp_path / "b", **cfg), t5)
    assert resumed.resumed_from == 4
    assert (straight.prompt_paths["final"].read_bytes()
            == resumed.prompt_paths["final"].read_bytes())
    with pytest.raises(ConfigError, match="different config .*optimizer.schedule"):
        _run(loop_config(tmp_path / "b", **{**cfg, "optimizer.schedule": "linear",
                                            "train.steps": 16}), t5)


def test_a_run_folder_written_before_schedules_existed_still_resumes(tmp_path, t5):
    first = _run(loop_config(tmp_path / "r", **{"train.steps": 8}), t5)
    saved = tmp_path / "r" / "config.json"
    raw = json.loads(saved.read_text())
    for key in ("schedule", "warmup_steps", "decay_steps"):
        del raw["optimizer"][key]
    saved.write_text(json.dumps(raw))
    resumed = _run(loop_config(tmp_path / "r", **{"train.steps": 12}), t5)
    assert first.final_step == 8 and resumed.resumed_from == 8 and resumed.final_step == 12
