"""Training runs of one frozen model, in this process or in worker processes.

A study or the demo trains dozens of short runs on one model. On a CPU those runs are
compute-bound and a small model does not keep every core busy, so `TrainPool(jobs=N)`
trains N runs at a time, each in its own worker process pinned to one core (where the
platform can pin). Each worker loads the model and vocabulary once and keeps its own
`StepCache`; the XLA compilation cache on disk is shared. With `jobs=1` (the default)
every run is trained in the calling process, at once, with the caller's model and step
cache, exactly as a plain loop of `spot.train.run.train` calls would.

Workers are started with the `spawn` method (JAX is not fork-safe), so a run's task must be
one a fresh process finds by name: built in, the offline suite, or a task file named in the
run's config (`data.task_files`). Each run writes only its own run folder; whoever submits
the runs records their results (rows, library entries), so nothing shared has two writers.
"""

from __future__ import annotations

import dataclasses
import os
import time
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

from spot.errors import ConfigError


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the platform has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def resolve_jobs(jobs: int | str | None) -> int:
    """`jobs` as a count: 0, None or "auto" mean one per usable core."""
    if not isinstance(jobs, bool) and jobs in (None, 0, "auto"):
        return usable_cores()
    if isinstance(jobs, str):
        try:
            jobs = int(jobs)
        except ValueError:
            raise ConfigError(f"jobs must be a positive count or 'auto', got {jobs!r}") from None
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ConfigError(f"jobs must be a positive count or 'auto', got {jobs!r}")
    return jobs


@dataclasses.dataclass(frozen=True)
class ModelSource:
    """How a worker gets the model: a saved checkpoint folder (with its vocab.model), or
    the run config's own model and vocabulary (`spot.train.run.build_model`)."""

    path: str | None = None
    dtype: str = "float32"
    config: Any = None  # a RunConfig

    def model(self) -> Any:
        if self.path is not None:
            from spot.model.api import load_t5

            return load_t5(Path(self.path), self.dtype)
        from spot.train.run import build_model

        return build_model(self.config)

    def vocabulary(self) -> Any:
        if self.path is not None:
            from spot.data.vocab import load_vocabulary

            return load_vocabulary(Path(self.path) / "vocab.model")
        from spot.train.run import resolve_vocab

        return resolve_vocab(self.config)


_WORKER: dict[str, Any] = {}


def _end_with_parent() -> None:
    """On Linux, have the kernel end this worker when the process that started it dies (a
    killed demo leaves no orphan training on)."""
    import ctypes
    import signal
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent died before the request took effect
        os._exit(1)


def _init_worker(source: ModelSource, cores: Any, compilation_cache: tuple[str, float] | None
                 ) -> None:
    import signal

    # Ctrl-C is the caller's: it stops the pool (`TrainPool.close`), which ends the workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _end_with_parent()
    core = cores.get() if cores is not None else None
    if core is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {core})  # before JAX starts its thread pool
    import jax

    if compilation_cache is not None:
        jax.config.update("jax_compilation_cache_dir", compilation_cache[0])
        jax.config.update("jax_persistent_cache_min_compile_time_secs", compilation_cache[1])
    from spot.train.step_cache import StepCache

    _WORKER.update(t5=source.model(), vocab=source.vocabulary(), step_cache=StepCache())


def _timed_train(config: Any, t5: Any, vocab: Any, step_cache: Any) -> Any:
    """`train(config)`, its `seconds` the whole call (model preparation included)."""
    from spot.train.run import train

    started = time.time()
    result = train(config, t5=t5, vocab=vocab, log=lambda s: None, step_cache=step_cache)
    return dataclasses.replace(result, seconds=time.time() - started)


def _train_in_worker(config: Any) -> Any:
    return _timed_train(config, _WORKER["t5"], _WORKER["vocab"], _WORKER["step_cache"])


class TrainPool:
    """`submit(config)` -> a Future of the run's `RunResult`.

    jobs=1 trains at once in this process with `t5`, `vocab` and `step_cache` (loaded from
    `source` on the first submit when None); jobs > 1 starts that many workers (lazily, on
    the first submit) that load `source` themselves, so this process loads nothing."""

    def __init__(self, jobs: int, *, source: ModelSource, t5: Any = None, vocab: Any = None,
                 step_cache: Any = None):
        self.jobs = resolve_jobs(jobs)
        self.t5, self.vocab, self.source = t5, vocab, source
        if step_cache is None:
            from spot.train.step_cache import StepCache

            step_cache = StepCache()
        self.step_cache = step_cache
        self._executor: ProcessPoolExecutor | None = None

    @property
    def parallel(self) -> bool:
        return self.jobs > 1

    def _start(self) -> ProcessPoolExecutor:
        if self._executor is None:
            import multiprocessing

            import jax

            ctx = multiprocessing.get_context("spawn")
            cores = None
            if hasattr(os, "sched_getaffinity"):
                allowed = sorted(os.sched_getaffinity(0))
                if self.jobs <= len(allowed):  # one core each; more workers than cores: unpinned
                    cores = ctx.Queue()
                    for c in allowed[: self.jobs]:
                        cores.put(c)
            cache_dir = jax.config.jax_compilation_cache_dir
            cache = ((str(cache_dir), float(jax.config.jax_persistent_cache_min_compile_time_secs))
                     if cache_dir else None)
            self._executor = ProcessPoolExecutor(
                max_workers=self.jobs, mp_context=ctx, initializer=_init_worker,
                initargs=(self.source, cores, cache))
        return self._executor

    def submit(self, config: Any) -> Future:
        if not self.parallel:
            if self.t5 is None:
                self.t5 = self.source.model()
            if self.vocab is None:
                self.vocab = self.source.vocabulary()
            future: Future = Future()
            try:
                future.set_result(_timed_train(config, self.t5, self.vocab, self.step_cache))
            except Exception as e:  # noqa: BLE001 - handed to whoever waits on the future
                future.set_exception(e)
            return future
        return self._start().submit(_train_in_worker, config)

    def close(self, *, cancel: bool = False) -> None:
        """Wait for the submitted runs; with `cancel` (an error or Ctrl-C in the caller) drop
        the queued ones and end the running workers at once. A run ended so is resumed from
        its last checkpoint by the next invocation, as after any kill."""
        executor, self._executor = self._executor, None
        if executor is None:
            return
        if not cancel:
            executor.shutdown(wait=True)
            return
        workers = list((getattr(executor, "_processes", None) or {}).values())
        manager = getattr(executor, "_executor_manager_thread", None)
        executor.shutdown(wait=False, cancel_futures=True)
        for worker in workers:
            worker.terminate()
        deadline = time.monotonic() + 30
        for worker in workers:
            worker.join(timeout=max(0.0, deadline - time.monotonic()))
        # The executor's own thread reaps the same workers (waitpid) at the same time: a
        # join that loses that race returns before the exit code is recorded, so the worker
        # would still read as alive. Its thread records it; wait for that thread.
        if manager is not None:
            manager.join(timeout=max(0.0, deadline - time.monotonic()))
        for worker in workers:
            while worker.exitcode is None and time.monotonic() < deadline:
                time.sleep(0.01)

    def __enter__(self) -> "TrainPool":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        self.close(cancel=exc_type is not None)
