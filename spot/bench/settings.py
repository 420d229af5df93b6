"""What a benchmark measures is a `RunConfig` (model, dtypes, attention, remat, scan, shapes,
seed: the same fields a training run reads) plus how it is timed, which no run needs.

Each benchmark has its own defaults (a small model and shapes that finish in seconds);
`spot bench` applies `--config` files, its shorthand flags and `--set` on top of them, in
that order, as the train commands do.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Mapping

from spot.config import RunConfig, apply_overrides, load_toml
from spot.errors import ConfigError

# data.target_length is the number of decoded tokens for the decode and predict benchmarks,
# as evaluation decodes up to data.target_length tokens.
TRAIN_STEP_DEFAULTS: dict[str, Any] = {
    "model.name": "t5_1_1_small", "data.batch_size": 8, "data.input_length": 64,
    "data.target_length": 8, "prompt.length": 100}
DECODE_DEFAULTS: dict[str, Any] = {
    "model.name": "t5_1_1_small", "data.batch_size": 32, "data.input_length": 64,
    "data.target_length": 16, "prompt.length": 100}
PREDICT_DEFAULTS: dict[str, Any] = {
    "model.name": "test_tiny", "data.batch_size": 16, "data.input_length": 64,
    "data.target_length": 8, "prompt.length": 20}


@dataclasses.dataclass(frozen=True)
class Timing:
    """How a train-step or decode benchmark times."""

    steps: int = 20  # timed steps (train step) or decode calls
    warmup: int = 3  # untimed runs after compiling (the first holds the compilation)
    compile_only: bool = False  # train step: compile and size the step, run nothing


@dataclasses.dataclass(frozen=True)
class PredictLoad:
    """The request mix of the mixed-task inference benchmark."""

    tasks: int = 4  # distinct tasks, each with its own prompt
    requests: int = 64
    repeats: int = 3  # timed passes of each side


def bench_config(defaults: Mapping[str, Any], files: Iterable[str] = (),
                 overrides: Mapping[str, Any] | None = None) -> RunConfig:
    """The benchmark's defaults < TOML files < overrides (flags, then --set), resolved."""
    config = apply_overrides(RunConfig(), defaults)
    for path in files:
        config = load_toml(path, config)
    return apply_overrides(config, overrides or {}).resolve()


def check_at_least(least: int, **values: int) -> None:
    """Refuse sizes and counts below `least` before any model is built."""
    for name, value in values.items():
        if value < least:
            word = "at least 1" if least == 1 else f">= {least}"
            raise ConfigError(f"{name} must be {word}, got {value}")
