"""What a library entry is, and which values `PromptLibrary.add` accepts for one.

Kept apart from the SQLite store so that ranking and import/export can name `Entry`
without importing the store.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from spot.errors import ConfigError, PromptError
from spot.retrieval import similarity as sim

KINDS = ("prompt", "embedding")  # indexed by "was a separate embedding given"


@dataclass(frozen=True)
class Entry:
    """One library entry. `kind` is "embedding" when a separate early-checkpoint embedding
    is the key, "prompt" when the prompt itself serves as its own key."""

    id: str
    task: str
    run: str
    model: str
    step: int | None
    kind: str
    metrics: dict = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)
    created: float = 0.0
    prompt_shape: tuple[int, int] = (0, 0)
    key_shape: tuple[int, int] = (0, 0)
    dtype: str = "float32"

    @property
    def width(self) -> int:
        return self.key_shape[1]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "task": self.task, "run": self.run, "model": self.model,
            "step": self.step, "kind": self.kind, "metrics": dict(self.metrics),
            "metadata": dict(self.metadata), "created": self.created,
            "created_utc": _dt.datetime.fromtimestamp(self.created, _dt.timezone.utc).isoformat(timespec="seconds"),
            "prompt_shape": list(self.prompt_shape), "key_shape": list(self.key_shape), "dtype": self.dtype,
        }


@dataclass(frozen=True)
class CheckedItem:
    """One `add` item after validation: arrays in their on-disk dtype, labels checked,
    metrics and metadata as the JSON text the index stores."""

    task: str
    run: str | None  # None: the store picks the next free integer at commit time
    model: str
    step: int | None
    kind: str
    metrics_json: str
    metadata_json: str
    prompt: np.ndarray
    key: np.ndarray  # the prompt itself when kind == "prompt"
    summary: sim.Summary


def check_label(value: object, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{what} must be a non-empty string, got {value!r}")
    if len(value) > 256 or any(ord(c) < 32 for c in value):
        raise ConfigError(f"{what} {value!r} is too long or holds control characters")
    return value


def storage_array(x: object, what: str) -> np.ndarray:
    """Validate a prompt/embedding and pick its on-disk dtype (float64 stays float64)."""
    checked = sim.as_embedding(x, what)  # shape, numbers, finiteness
    dtype = np.float64 if np.asarray(x).dtype == np.float64 else np.float32
    with np.errstate(over="ignore"):
        arr = np.ascontiguousarray(np.asarray(x), dtype=dtype)
    if dtype == np.float32 and not np.isfinite(arr).all():
        raise PromptError(f"{what} overflows float32 (largest magnitude {np.abs(checked).max():g})")
    return arr


def json_field(value: Mapping[str, Any] | None, what: str) -> str:
    if value is None:
        return "{}"
    if not isinstance(value, Mapping):
        raise ConfigError(f"{what} must be a mapping, got {type(value).__name__}")
    try:
        return json.dumps(dict(value), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{what} must be JSON-serializable with finite numbers: {e}") from None


def check_metrics(metrics: Mapping[str, Any] | None) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, value in (metrics or {}).items():
        check_label(name, "metric name")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"metric {name!r} must be a number, got {value!r}") from None
        if not math.isfinite(number):
            raise ConfigError(f"metric {name!r} is not finite: {value!r}")
        out[name] = number
    return out


def check_item(item: Mapping[str, Any]) -> CheckedItem:
    """Validate one item of `add`'s keywords; keys beyond them become the metadata."""
    item = dict(item)
    try:
        task = item.pop("task")
        prompt = item.pop("prompt")
    except KeyError as e:
        raise ConfigError(f"library add needs {e.args[0]}=") from None
    embedding = item.pop("embedding", None)
    run = item.pop("run", None)
    model = item.pop("model", "unspecified")
    step = item.pop("step", None)
    metrics = check_metrics(item.pop("metrics", None))
    check_label(task, "task")
    check_label(model, "model")
    if run is not None:
        run = check_label(str(run), "run")
    if step is not None and (isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0):
        raise ConfigError(f"step must be a non-negative integer, got {step!r}")
    prompt_arr = storage_array(prompt, f"prompt for task {task!r}")
    key_arr = prompt_arr if embedding is None else storage_array(embedding, f"embedding for task {task!r}")
    if key_arr.shape[1] != prompt_arr.shape[1]:
        raise PromptError(f"task {task!r}: embedding width {key_arr.shape[1]} differs from "
                          f"prompt width {prompt_arr.shape[1]}")
    summary = sim.summarize(key_arr, f"key for task {task!r}")
    if np.isnan(summary.unit_mean).any() or float(np.sum(summary.mean ** 2)) == 0.0:
        raise PromptError(f"task {task!r}: the key has a zero-norm token or a zero mean token, "
                          "so cosine similarities are undefined; it cannot be stored")
    return CheckedItem(task=task, run=run, model=model, step=None if step is None else int(step),
                       kind=KINDS[embedding is not None], metrics_json=json.dumps(metrics, sort_keys=True),
                       metadata_json=json_field(item, "metadata"), prompt=prompt_arr, key=key_arr,
                       summary=summary)
