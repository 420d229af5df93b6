"""The run loop's pieces, each alone: the step cache, the best-checkpoint tracker, the hook
schedule, the loss log's NaN guard, and finalize's prompt paths of a resumed run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from spot.errors import NonFiniteError
from spot.train.loop import BestTracker, LossLog, PeriodicHooks, RunOutputs, finalize
from spot.train.step_cache import StepCache

from .synthetic import loop_config


def test_step_cache_keys_on_module_identity_and_key_and_keeps_the_newest():
    cache, built = StepCache(size=2), []
    module_a, module_b = object(), object()

    def build(tag):
        return lambda: built.append(tag) or tag

    assert cache.get(module_a, "k", build("a")) == "a"
    assert cache.get(module_a, "k", build("again")) == "a" and built == ["a"]
    assert cache.get(module_b, "k", build("b")) == "b"  # same key, other module object
    assert cache.get(module_a, "k2", build("c")) == "c"
    assert len(cache) == 2 and cache.steps() == ["b", "c"]  # "a" was the oldest
    cache.clear()
    assert len(cache) == 0


class _Writer:
    def __init__(self):
        self.rows = []

    def write(self, step, kind, values):
        self.rows.append((step, kind, values))


def _outputs(tmp_path, start_step=0):
    config = loop_config(tmp_path).resolve()
    out = RunOutputs(out_dir=tmp_path, writer=_Writer(), best=BestTracker(tmp_path, start_step),
                     meta={"config": json.loads(config.to_json())})
    return config, out


def test_best_tracker_keeps_strict_improvements_and_drops_a_best_after_the_resume(tmp_path):
    prompt = {"prompt": np.ones((2, 4), np.float32)}
    best = BestTracker(tmp_path, 0)
    assert best.offer(2, 50.0, {"accuracy": 50.0}, prompt, {}) == (
        True, tmp_path / "prompts" / "best.npy")
    assert best.offer(4, 50.0, {"accuracy": 50.0}, prompt, {})[0] is False  # a tie keeps
    assert best.offer(6, 60.0, {"accuracy": 60.0}, prompt, {})[0] is True
    assert (best.step, best.score) == (6, 60.0)
    assert json.loads((tmp_path / "best.json").read_text())["step"] == 6
    assert BestTracker(tmp_path, 6).step == 6
    assert BestTracker(tmp_path, 4).best == {}  # recorded after step 4: recomputed
    assert best.offer(8, 1.0, {}, {"params": {}}, {}) == (False, None)
    model_best = BestTracker(tmp_path / "m", 0)
    assert model_best.offer(2, 1.0, {}, {"params": {}}, {}) == (True, None)  # no prompt


def test_hooks_run_on_the_schedule(tmp_path):
    config, out = _outputs(tmp_path)
    saves, evals = [], []

    class Manager:
        def save(self, step, args):
            saves.append(step)

    def evaluate(trainable, frozen):
        evals.append(1)
        return {"accuracy": float(len(evals))}, float(len(evals))

    hooks = PeriodicHooks(config.train, out, evaluate, Manager())
    state = {"trainable": {"prompt": np.zeros((4, 8), np.float32)}}
    synced = [s for s in range(1, config.train.steps + 1) if hooks.must_sync(s)]
    assert synced == [4, 5, 6, 8, 12]  # checkpoints every 4, embedding 5, eval every 6, end
    for step in range(1, config.train.steps + 1):
        hooks.after_step(step, state, {})
    assert saves == [4, 8, 12] and len(evals) == 2 and hooks.last_eval == "2.00"
    assert out.prompt_paths["embedding"].name == "embedding_step5.npy"
    assert out.prompt_paths["best"].name == "best.npy" and out.best.step == 12
    assert [row[0] for row in out.writer.rows] == [6, 12]


def test_loss_log_averages_windows_and_stops_on_nan(tmp_path):
    class Manager:
        def latest_step(self):
            return 4

    writer = _Writer()
    log = LossLog(writer, Manager(), tmp_path / "checkpoints")
    log.add(1, {"loss": 2.0}, write=False)
    log.add(2, {"loss": 4.0}, write=True)
    assert writer.rows == [(2, "train", {"loss": 3.0})]
    log.add(3, {"loss": float("nan")}, write=False)
    with pytest.raises(NonFiniteError, match=r"loss became nan at step 3.*\(step 4\)"):
        log.finish()


def test_finalize_finds_prompts_an_earlier_invocation_wrote(tmp_path):
    config, out = _outputs(tmp_path)
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    for name in ("best.npy", "embedding_step5.npy"):
        (prompts / name).write_bytes(b"")
    finalize(out, {"trainable": {"prompt": np.zeros((4, 8), np.float32)}}, 12, config=config,
             metadata={})
    assert sorted(out.prompt_paths) == ["best", "embedding", "final"]
    assert out.prompt_paths["final"].exists()
