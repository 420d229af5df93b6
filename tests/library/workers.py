"""Child-process bodies for the library's concurrency and crash tests (spawned, not forked)."""

from __future__ import annotations

import contextlib
import os
import signal

import numpy as np


def _prompt(worker: int, i: int, width: int = 8) -> np.ndarray:
    rng = np.random.default_rng([worker, i])
    return rng.normal(size=(3 + i % 3, width)).astype(np.float32)


def add_entries(root: str, worker: int, count: int) -> None:
    """Add `count` entries; half name their run, half take the default (races on run numbers)."""
    from spot.library.store import PromptLibrary

    with PromptLibrary(root) as lib:
        for i in range(count):
            run = f"w{worker}-{i}" if i % 2 else None
            lib.add(task=f"task{i % 3}", prompt=_prompt(worker, i), run=run, model="tiny",
                    worker=worker, index=i)


def add_until_killed(root: str, log_path: str) -> None:
    """Add entries forever, logging each id only after `add` returned (durably)."""
    from spot.library.store import PromptLibrary

    with PromptLibrary(root) as lib, open(log_path, "a", encoding="utf-8") as log:
        i = 0
        while True:
            entry = lib.add(task=f"task{i % 4}", prompt=_prompt(99, i), embedding=_prompt(98, i),
                            model="tiny", index=i)
            log.write(entry.id + "\n")
            log.flush()
            os.fsync(log.fileno())
            i += 1


def die_after_arrays(root: str) -> None:
    """Write one good entry, then die by SIGKILL after writing the next entry's arrays."""
    from spot.library.store import PromptLibrary

    lib = PromptLibrary(root)
    lib.add(task="kept", prompt=_prompt(1, 1), model="tiny")
    lib._commit = lambda rows: os.kill(os.getpid(), signal.SIGKILL)
    lib.add(task="lost", prompt=_prompt(1, 2), embedding=_prompt(1, 3), model="tiny")


def die_inside_transaction(root: str) -> None:
    """Insert rows inside an open write transaction, then die by SIGKILL before COMMIT."""
    from spot.library import store

    lib = store.PromptLibrary(root)
    original = store.PromptLibrary._write

    @contextlib.contextmanager
    def killing_write(conn):
        with original(conn):
            yield
            os.kill(os.getpid(), signal.SIGKILL)

    store.PromptLibrary._write = staticmethod(killing_write)
    lib.add(task="lost", prompt=_prompt(2, 2), model="tiny")
