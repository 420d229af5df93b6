"""spot: soft prompt transfer (SPoT) on a frozen T5 1.1, in JAX.

The public API is re-exported here lazily, so `import spot` (and the CLI) stay fast until a
name that needs JAX is used.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "T5Config": "spot.model.t5",
    "T5": "spot.model.api",
    "load_t5": "spot.model.api",
    "load_prompt": "spot.model.prompt_files",
    "save_prompt": "spot.model.prompt_files",
    "similarity": "spot.retrieval.similarity",
    "PromptLibrary": "spot.library.store",
    "SpotError": "spot.errors",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'spot' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
