"""Typed run configuration: frozen dataclasses, TOML files and `--set key=value` overrides.

A run is fully described by a `RunConfig`; the CLI only parses flags into overrides of one.
Unknown keys and values of the wrong type fail before anything heavy starts.

Precedence (lowest to highest): dataclass defaults < TOML file(s) < CLI flags < `--set`.
Values that depend on the training mode (learning rate, factored statistics, the stored
weights' dtype) default to "unset" and are filled by `resolve` (which `validate` runs) from
the mode's recipe in `MODE_DEFAULTS`, so every entry point, a notebook included, gets the
same recipe, and a value set anywhere wins.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, Mapping

from spot.errors import ConfigError
from spot.model.prompt import INITIALIZERS
from spot.model.t5_config import ATTENTION_IMPLS, DTYPE_CHOICES
from spot.model.t5_config import REMAT_POLICIES as _MODEL_REMAT_POLICIES


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Which frozen model. `name` is a preset (small..xxl, test sizes) or a checkpoint path/id."""

    name: str = "t5_1_1_base"
    checkpoint: str = ""  # overrides the preset's default checkpoint location when set
    dtype: str = "auto"  # compute dtype: auto = bfloat16 on GPU/TPU, float32 on CPU
    # Stored weights: auto = bfloat16 on GPU/TPU, float32 on CPU; resolves to float32 in
    # model tuning (trained weights stay in float32) unless set explicitly.
    param_dtype: str = "auto"
    attention_impl: str = "xla"  # xla | fused (jax.nn.dot_product_attention where no dropout)
    # Rematerialize each layer in the backward pass (memory for compute): none | full (keep
    # only layer inputs) | dots (also keep weight-matmul outputs). true/false mean full/none.
    remat: str = "none"
    scan_layers: bool = False  # one nn.scan per stack: compile time independent of depth
    random_weights: bool = False  # benchmarks only: skip loading, use t5x's random init


@dataclasses.dataclass(frozen=True)
class PromptConfig:
    length: int = 100
    init: str = "sampled_vocab"  # uniform | sampled_vocab | class_labels | text | file
    init_path: str = ""  # for init = file (the transfer path; --init sets it)
    init_text: str = ""
    resize: bool = False  # allow an --init prompt of another length (truncate or pad)
    population: int = 5000  # sampled_vocab draws from the first N embedding rows
    uniform_scale: float = 0.5
    reparameterize: bool = False  # two-layer feed-forward prompt encoder
    encoder_hidden: int = 200


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    """Adafactor with decoupled weight decay, at a constant learning rate (the paper's
    recipe) unless `schedule` says otherwise.

    `learning_rate` and `factored` left unset (None) take the training mode's recipe when
    the config is resolved (`RunConfig.resolve`, see `MODE_DEFAULTS`): prompt tuning 0.3
    unfactored, model tuning 1e-3 factored. A value set anywhere wins.

    `schedule`: constant | linear | cosine. The rate rises linearly from 0 over
    `warmup_steps` (0: no warmup), then stays at `learning_rate` (constant) or falls to 0
    at step `decay_steps` (linear, cosine; 0: the run's `train.steps`, filled in when the
    config is resolved) and stays there.
    """

    learning_rate: float | None = None
    weight_decay: float = 1e-5
    decay_rate: float = 0.8
    clipping_threshold: float = 1.0
    epsilon: float = 1e-30
    factored: bool | None = None  # the prompt stays unfactored; model tuning factors matrices
    z_loss: float = 1e-4
    schedule: str = "constant"
    warmup_steps: int = 0
    decay_steps: int = 0

    def resolve(self, mode: str = "prompt") -> "OptimizerConfig":
        """Fill the unset fields from `mode`'s recipe."""
        unset = {k: v for k, v in MODE_DEFAULTS[mode].get("optimizer", {}).items()
                 if getattr(self, k) is None}
        return dataclasses.replace(self, **unset) if unset else self


@dataclasses.dataclass(frozen=True)
class DataConfig:
    task: str = ""
    mixture: str = ""
    task_files: tuple[str, ...] = ()
    vocab: str = ""  # SentencePiece model path; empty = the model's default
    input_length: int = 512
    target_length: int = 128
    batch_size: int = 32
    mixing_K: int = 2**19
    eval_split: str = "validation"
    eval_batch_size: int = 64
    max_eval_examples: int = 0  # 0 = the whole split


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    mode: str = "prompt"  # prompt | model (all weights trainable: the model-tuning baseline)
    steps: int = 262_144
    eval_every: int = 500
    checkpoint_every: int = 500
    embedding_step: int = 10_000  # the fixed early step whose prompt is the task embedding
    seed: int = 0
    out_dir: str = ""
    eval_method: str = "auto"  # auto (rank for closed label sets, else decode) | rank | decode
    keep_checkpoints: int = 2
    log_every: int = 50
    progress: bool = True
    # Split each batch into this many equal parts, run forward and backward on one part at a
    # time and sum the gradients before the one optimizer update: the same step as the whole
    # batch (up to float summation order), with less memory at once. On CPU small parts are
    # also faster per example (docs/performance.md, "Microbatches"); 1 keeps the plain step.
    microbatches: int = 1
    # Score the initial prompt (or model) once before the first step, into OUT/initial.json:
    # what the frozen model does before any tuning, the floor a run's gain is read against.
    # Not a checkpoint: it never becomes the best one.
    eval_at_start: bool = False


@dataclasses.dataclass(frozen=True)
class MeshConfig:
    data: int = -1  # -1 = all devices not used by the model axis
    model: int = 1  # >1 shards frozen weights (xl/xxl) on this many devices
    multihost: bool = False  # call jax.distributed.initialize() first


@dataclasses.dataclass(frozen=True)
class RunConfig:
    model: ModelConfig = ModelConfig()
    prompt: PromptConfig = PromptConfig()
    optimizer: OptimizerConfig = OptimizerConfig()
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    mesh: MeshConfig = MeshConfig()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @property
    def task_or_mixture(self) -> str:
        return self.data.mixture or self.data.task

    def resolve(self) -> "RunConfig":
        """The config with every mode-dependent default filled in (idempotent)."""
        return resolve(self)


# The paper's recipe per training mode: what an unset (None / "auto") value becomes when the
# config is resolved. Prompt tuning: Adafactor at 0.3 with unfactored statistics; model
# tuning: Adafactor at 1e-3 with factored statistics and float32 weights.
MODE_DEFAULTS: dict[str, dict[str, dict[str, Any]]] = {
    "prompt": {"optimizer": {"learning_rate": 0.3, "factored": False}},
    "model": {"optimizer": {"learning_rate": 1e-3, "factored": True},
              "model": {"param_dtype": "float32"}},
}
_UNSET = {("model", "param_dtype"): "auto"}  # sentinels other than None

LR_SCHEDULES = ("constant", "linear", "cosine")
REMAT_POLICIES = ("none", *_MODEL_REMAT_POLICIES)  # none, then the model's own policies
_REMAT_BOOLS = {"true": "full", "1": "full", "yes": "full",
                "false": "none", "0": "none", "no": "none"}


def _remat_value(value: Any) -> Any:
    """Old configs spell `model.remat` as a boolean: true = full, false = none."""
    if isinstance(value, bool):
        return "full" if value else "none"
    if isinstance(value, str) and value.lower() in _REMAT_BOOLS:
        return _REMAT_BOOLS[value.lower()]
    return value


def resolve(config: RunConfig) -> RunConfig:
    """Fill unset values from the training mode's recipe (`MODE_DEFAULTS`); explicit values
    are kept. The result round-trips through `to_json` / `from_dict`."""
    mode = config.train.mode
    optimizer = config.optimizer.resolve(mode if mode in MODE_DEFAULTS else "prompt")
    if optimizer.schedule != "constant" and optimizer.decay_steps == 0:
        optimizer = dataclasses.replace(optimizer, decay_steps=config.train.steps)
    model_changes: dict[str, Any] = {}
    for key, value in MODE_DEFAULTS.get(mode, {}).get("model", {}).items():
        if getattr(config.model, key) == _UNSET.get(("model", key)):
            model_changes[key] = value
    remat = _remat_value(config.model.remat)
    if remat != config.model.remat:
        model_changes["remat"] = remat
    if optimizer is config.optimizer and not model_changes:
        return config
    return dataclasses.replace(config, optimizer=optimizer,
                               model=dataclasses.replace(config.model, **model_changes))


# Choices that name model options come from the model's own constants (one list each).
_CHOICES = {
    ("model", "dtype"): DTYPE_CHOICES,
    ("model", "param_dtype"): DTYPE_CHOICES,
    ("model", "attention_impl"): ATTENTION_IMPLS,
    ("model", "remat"): REMAT_POLICIES,
    ("prompt", "init"): INITIALIZERS,
    ("train", "mode"): ("prompt", "model"),
    ("train", "eval_method"): ("auto", "rank", "decode"),
    ("optimizer", "schedule"): LR_SCHEDULES,
}


def _field_types(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(section: str, key: str, value: Any, typ: Any) -> Any:
    where = f"{section}.{key}"
    origin = typing.get_origin(typ)
    if origin in (typing.Union, types.UnionType):  # `float | None`: None means unset
        if value is None:
            return None
        (typ,) = [t for t in typing.get_args(typ) if t is not type(None)]
        origin = typing.get_origin(typ)
    if (section, key) == ("model", "remat"):
        value = _remat_value(value)
    if origin is tuple or typ is tuple:
        if isinstance(value, str):
            value = [v for v in value.split(",") if v]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where} must be a list of strings, got {value!r}")
        return tuple(value)
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{where} must be true or false, got {value!r}")
    if typ is int:
        if isinstance(value, bool):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            try:
                return int(value.replace("_", ""), 0)
            except ValueError:
                pass
        raise ConfigError(f"{where} must be an integer, got {value!r}")
    if typ is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        number = None
        if isinstance(value, (int, float)):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                pass
        if number is None:
            raise ConfigError(f"{where} must be a number, got {value!r}")
        if not math.isfinite(number):
            # NaN passes every `<= 0` check and is not JSON: a config error, never a value.
            shown = value if isinstance(value, str) else repr(value)
            raise ConfigError(f"{where} must be a finite number, got {shown}")
        return number
    if typ is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        choices = _CHOICES.get((section, key))
        if choices and value not in choices:
            raise ConfigError(f"{where} must be one of {', '.join(choices)}; got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported type {typ}")  # pragma: no cover


def apply_overrides(config: RunConfig, overrides: Mapping[str, Any]) -> RunConfig:
    """Apply `{"section.key": value}` overrides with type checks; unknown keys are errors."""
    sections = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    changes: dict[str, dict[str, Any]] = {}
    for dotted, value in overrides.items():
        if "." not in dotted:
            raise ConfigError(f"config key {dotted!r} must look like section.key "
                              f"(sections: {', '.join(sections)})")
        section, key = dotted.split(".", 1)
        if section not in sections:
            raise ConfigError(f"unknown config section {section!r} in {dotted!r}; "
                              f"known: {', '.join(sections)}")
        types_ = _field_types(type(sections[section]))
        if key not in types_:
            raise ConfigError(f"unknown config key {dotted!r}; {section} has: "
                              f"{', '.join(types_)}")
        changes.setdefault(section, {})[key] = _coerce(section, key, value, types_[key])
    new_sections = {name: dataclasses.replace(obj, **changes.get(name, {}))
                    for name, obj in sections.items()}
    return RunConfig(**new_sections)


def _flatten_toml(data: Mapping[str, Any], source: str) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for section, values in data.items():
        if not isinstance(values, Mapping):
            raise ConfigError(f"{source}: top-level key {section!r} must be a [section] table")
        for key, value in values.items():
            flat[f"{section}.{key}"] = value
    return flat


def load_toml(path: str | Path, base: RunConfig | None = None) -> RunConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from None
    try:
        return apply_overrides(base or RunConfig(), _flatten_toml(data, str(path)))
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def parse_set_args(pairs: typing.Iterable[str]) -> dict[str, str]:
    """`["train.steps=100", ...]` -> `{"train.steps": "100"}`."""
    out: dict[str, str] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"--set expects key=value, got {pair!r}")
        key, value = pair.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def from_dict(d: Mapping[str, Any]) -> RunConfig:
    """Rebuild a RunConfig from `to_dict()` output (e.g. a run folder's config.json)."""
    return apply_overrides(RunConfig(), _flatten_toml(d, "config"))


def validate(config: RunConfig) -> RunConfig:
    """Resolve the mode-dependent defaults, then the cross-field checks that individual
    types cannot express; returns the resolved config."""
    config = resolve(config)
    d, t, p = config.data, config.train, config.prompt
    if bool(d.task) == bool(d.mixture):
        raise ConfigError("give exactly one of data.task (--task) or data.mixture (--mixture)")
    for name in ("input_length", "target_length", "batch_size", "eval_batch_size", "mixing_K"):
        if getattr(d, name) <= 0:
            raise ConfigError(f"data.{name} must be positive, got {getattr(d, name)}")
    for name in ("steps", "eval_every", "checkpoint_every", "log_every", "keep_checkpoints",
                 "microbatches"):
        if getattr(t, name) <= 0:
            raise ConfigError(f"train.{name} must be positive, got {getattr(t, name)}")
    if d.batch_size % t.microbatches:
        raise ConfigError(f"train.microbatches ({t.microbatches}) must divide data.batch_size "
                          f"({d.batch_size})")
    if t.embedding_step < 0:
        raise ConfigError("train.embedding_step must be >= 0 (0 disables the embedding)")
    if p.length <= 0:
        raise ConfigError(f"prompt.length must be positive, got {p.length}")
    if p.init == "file" and not p.init_path:
        raise ConfigError("prompt.init = file needs prompt.init_path (--init FILE)")
    o = config.optimizer
    ranges = [("optimizer.learning_rate", o.learning_rate, o.learning_rate > 0, "positive"),
              ("optimizer.weight_decay", o.weight_decay, o.weight_decay >= 0, ">= 0"),
              ("optimizer.z_loss", o.z_loss, o.z_loss >= 0, ">= 0"),
              ("optimizer.epsilon", o.epsilon, o.epsilon > 0, "positive"),
              ("optimizer.clipping_threshold", o.clipping_threshold, o.clipping_threshold > 0,
               "positive"),
              ("optimizer.decay_rate", o.decay_rate, 0 < o.decay_rate <= 1, "in (0, 1]"),
              ("optimizer.warmup_steps", o.warmup_steps, o.warmup_steps >= 0, ">= 0"),
              ("optimizer.decay_steps", o.decay_steps,
               o.schedule == "constant" or o.decay_steps > o.warmup_steps,
               f"above optimizer.warmup_steps ({o.warmup_steps}) for a {o.schedule} schedule"),
              ("prompt.uniform_scale", p.uniform_scale, p.uniform_scale > 0, "positive")]
    for key, value, ok, want in ranges:
        if not ok:  # also catches a NaN built in Python, which no comparison lets through
            raise ConfigError(f"{key} must be {want}, got {value!r}")
    return config


