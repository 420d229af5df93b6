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
    for bad in (-1, "0", "many", 1.5, True, False):
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
    with TrainPool(2, source=ModelSource(config=base)) as pool:
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


def _pids_alive(pids):

    alive = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split(")")[-1].split()[0] != "Z":  # a zombie has ended
                    alive.append(pid)
        except FileNotFoundError:
            pass
    return alive


def test_cancel_ends_running_workers_at_once(tmp_path, tiny_model):
    import time

    base = _config(tmp_path, tiny_model, "offline_vader_valence")
    endless = apply_overrides(base, {"train.steps": 10**7, "train.eval_every": 10**7,
                                     "train.checkpoint_every": 10**7})
    pool = TrainPool(2, source=ModelSource(config=base))
    future = pool.submit(endless)
    workers = list(pool._executor._processes.values())
    assert workers
    time.sleep(5)  # let it start training
    started = time.time()
    pool.close(cancel=True)
    assert time.time() - started < 30
    assert not any(w.is_alive() for w in workers)
    assert future.done()


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"),
                    reason="PR_SET_PDEATHSIG and /proc are Linux kernel features")
def test_workers_end_when_the_process_that_started_them_is_killed(tmp_path, tiny_model):
    """kill -9 of a study leaves no worker training on (PR_SET_PDEATHSIG)."""
    import json
    import os
    import signal
    import subprocess
    import sys
    import time

    script = f"""
import json, sys, time
from spot.config import RunConfig, apply_overrides
from spot.workflows.pool import ModelSource, TrainPool
base = apply_overrides(RunConfig(), {{"data.task": "offline_vader_valence",
    "model.name": {str(tiny_model)!r}, "train.steps": 10**7, "train.out_dir": {str(tmp_path / "r")!r},
    "train.progress": False, "data.batch_size": 4, "data.input_length": 16,
    "data.target_length": 4, "prompt.length": 2, "train.eval_every": 10**7,
    "train.checkpoint_every": 10**7}})
pool = TrainPool(2, source=ModelSource(config=base))
pool.submit(base)
print(json.dumps([p.pid for p in pool._executor._processes.values()]), flush=True)
time.sleep(600)
"""
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        pids = json.loads(parent.stdout.readline())
        time.sleep(3)
        assert _pids_alive(pids)
    finally:
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
    deadline = time.time() + 30
    while _pids_alive(pids) and time.time() < deadline:
        time.sleep(0.5)
    assert not _pids_alive(pids)
