"""Jitted train steps kept across the runs of one caller.

A study (`spot study`, `spot demo`) runs dozens of short runs with the same frozen model and
shapes; reusing the jitted step skips tracing and the compilation-cache read (several
seconds a run on CPU). Whoever runs many runs makes one `StepCache` and passes it to each
run (`spot.train.run.train(..., step_cache=)`); a run given none builds its own step.
"""

from __future__ import annotations

from typing import Any, Callable, Hashable

import jax
import jax.numpy as jnp
import numpy as np


def tree_signature(tree: Any) -> tuple:
    """A pytree's structure, shapes and dtypes: what a jitted function is specialized on."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    return treedef, tuple((tuple(np.shape(x)), str(jnp.result_type(x))) for x in leaves)


class StepCache:
    """Jitted steps keyed by the module object (identity) and a hashable key, newest last;
    at most `size` are kept."""

    def __init__(self, size: int = 8):
        self.size = size
        self._entries: list[tuple[Hashable, Any, Any]] = []

    def __len__(self) -> int:
        return len(self._entries)

    def steps(self) -> list[Any]:
        """The cached values, oldest first."""
        return [value for _, _, value in self._entries]

    def clear(self) -> None:
        self._entries.clear()

    def get(self, module: Any, key: Hashable, build: Callable[[], Any]) -> Any:
        """The value cached for `module` and `key`, else `build()` (then cached)."""
        for i, (held_key, held_module, value) in enumerate(self._entries):
            if held_module is module and held_key == key:
                self._entries.append(self._entries.pop(i))
                return value
        value = build()
        self._entries.append((key, module, value))
        del self._entries[:-self.size]
        return value
