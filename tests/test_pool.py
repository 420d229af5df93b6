"""`spot.workflows.pool`: how many jobs, in-process runs, and a worker's error reaching the
caller. That worker runs train exactly as one process does is tested on a real study in
tests/test_study_cli.py and on the demo in tests/test_demo.py."""

from __future__ import annotations

import pytest

from spot.config import RunConfig, apply_overrides
from spot.errors import ConfigError, DataError
from spot.workflows.pool import ModelSource, TrainPool, resolve_jobs, usable_cores


def test_resolve_jobs():
    assert resolve_jobs("auto") == resolve_jobs(0) == resolve_jobs(None) == usable_cores() >= 1
    assert resolve_jobs(3) == resolve_jobs("3") == 3
    for bad in (-1, "0", "many", 1.5, True):
        with pytest.raises(ConfigError, match="positive count or 'auto'"):
            resolve_jobs(bad)


def _config(tmp_path, tiny_model, task):
    return apply_overrides(RunConfig(), {
        "data.task": task, "model.name": str(tiny_model), "train.steps": 2,
        "train.out_dir": str(tmp_path / "run"), "train.progress": False,
        "data.batch_size": 4, "data.input_length": 16, "data.target_length": 4,
        "prompt.length": 2, "data.max_eval_examples": 8, "data.eval_batch_size": 8})


def test_an_error_in_a_worker_reaches_the_caller_with_its_type(tmp_path, tiny_model):
    base = _config(tmp_path, tiny_model, "offline_vader_valence")
    bad = apply_overrides(base, {"data.task": "no_such_task"})
    from spot.train.run import build_model, resolve_vocab

    with TrainPool(2, t5=build_model(base), vocab=resolve_vocab(base),
                   source=ModelSource(config=base)) as pool:
        assert pool.parallel
        with pytest.raises(DataError, match="no_such_task"):
            pool.submit(bad).result()
        # The pool still trains after a failed run.
        result = pool.submit(base).result()
    assert result.final_step == 2 and result.seconds > 0
    assert (tmp_path / "run" / "summary.json").exists()


def test_one_job_trains_at_once_in_this_process(tmp_path, tiny_model):
    base = _config(tmp_path, tiny_model, "offline_vader_valence")
    from spot.train.run import build_model, resolve_vocab
    from spot.train.step_cache import StepCache

    cache = StepCache()
    pool = TrainPool(1, t5=build_model(base), vocab=resolve_vocab(base),
                     source=ModelSource(config=base), step_cache=cache)
    future = pool.submit(base)
    assert future.done() and not pool.parallel and len(cache) == 1
    assert future.result().final_step == 2
    failed = pool.submit(apply_overrides(base, {"data.task": "no_such_task"}))
    assert failed.done() and isinstance(failed.exception(), DataError)
