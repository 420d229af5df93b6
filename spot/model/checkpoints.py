"""Load frozen T5 weights from any supported format into one tree with t5x names.

Formats (detected from what a folder holds):
  * spot native: `config.json` (T5Config fields plus `format`/`format_version`) and
    `params.safetensors` with `/`-joined t5x names; see docs/formats.md.
  * t5x: a `checkpoint_N` folder (msgpack `checkpoint` + zarr folders), or the model folder
    above it (the highest N wins); local or `gs://`.
  * Hugging Face: `config.json` with `model.safetensors` (or sharded with an index),
    `flax_model.msgpack`, or `pytorch_model.bin` read with `torch.load(weights_only=True)`.
  * a Hugging Face hub id, fetched with `huggingface_hub` when online.

Every loader returns numpy arrays (float32 or bfloat16 as stored) and the result is checked
against the config, so a mismatch is reported by parameter name before anything reaches JAX.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from spot.errors import CheckpointError, ConfigError
from spot.fileio import finish_files, replace_dir, temp_dir_for
from spot.model.t5_config import T5Config

FORMAT_NAME = "spot-t5"
FORMAT_VERSION = 1
PARAMS_FILE = "params.safetensors"
CONFIG_FILE = "config.json"
NATIVE_FILES = (PARAMS_FILE, CONFIG_FILE)  # what spot owns in a native checkpoint folder

# t5x's standard T5 1.1 network hard-codes 32 buckets with max distance 128.
_T5X_STANDARD_BUCKETS = {32: 128}


# ----------------------------------------------------------------------------------------
# Trees
# ----------------------------------------------------------------------------------------

def flatten_params(tree: Mapping[str, Any], prefix: str = "") -> dict[str, np.ndarray]:
    """Nested dict -> {'a/b/c': array}; accepts jax arrays and returns numpy arrays."""
    flat: dict[str, np.ndarray] = {}
    for key, value in tree.items():
        key = str(key)
        if not key or "/" in key:
            raise CheckpointError(f"parameter name {prefix}{key!r} is empty or contains '/'")
        if isinstance(value, Mapping):
            flat.update(flatten_params(value, f"{prefix}{key}/"))
        else:
            flat[f"{prefix}{key}"] = np.asarray(value)
    return flat


def unflatten_params(flat: Mapping[str, Any]) -> dict:
    tree: dict = {}
    for name, value in flat.items():
        parts = name.split("/")
        node = tree
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise CheckpointError(f"parameter {name} nests under the array {part}")
            node = child
        if parts[-1] in node:
            raise CheckpointError(f"parameter {name} is given twice or is also a folder")
        node[parts[-1]] = value
    return tree


def expected_shapes(config: T5Config) -> dict[str, tuple[int, ...]]:
    """Every parameter of the network the config describes, by t5x name."""
    c = config
    e, inner, f = c.emb_dim, c.num_heads * c.head_dim, c.mlp_dim
    k = c.relative_attention_num_buckets
    n_act = len(c.mlp_activations)
    wis = ["wi"] if n_act == 1 else [f"wi_{i}" for i in range(n_act)]

    def mlp(base: str) -> dict:
        d = {f"{base}/mlp/{w}/kernel": (e, f) for w in wis}
        d[f"{base}/mlp/wo/kernel"] = (f, e)
        return d

    def attn(base: str) -> dict:
        d = {f"{base}/{p}/kernel": (e, inner) for p in ("query", "key", "value")}
        d[f"{base}/out/kernel"] = (inner, e)
        return d

    shapes: dict[str, tuple[int, ...]] = {
        "token_embedder/embedding": (c.vocab_size, e),
        "encoder/relpos_bias/rel_embedding": (c.num_heads, k),
        "encoder/encoder_norm/scale": (e,),
        "decoder/relpos_bias/rel_embedding": (c.num_heads, k),
        "decoder/decoder_norm/scale": (e,),
    }
    for i in range(c.num_encoder_layers):
        base = f"encoder/layers_{i}"
        shapes[f"{base}/pre_attention_layer_norm/scale"] = (e,)
        shapes.update(attn(f"{base}/attention"))
        shapes[f"{base}/pre_mlp_layer_norm/scale"] = (e,)
        shapes.update(mlp(base))
    for i in range(c.num_decoder_layers):
        base = f"decoder/layers_{i}"
        for norm in ("pre_self_attention_layer_norm", "pre_cross_attention_layer_norm",
                     "pre_mlp_layer_norm"):
            shapes[f"{base}/{norm}/scale"] = (e,)
        shapes.update(attn(f"{base}/self_attention"))
        shapes.update(attn(f"{base}/encoder_decoder_attention"))
        shapes.update(mlp(base))
    if not c.logits_via_embedding:
        shapes["decoder/logits_dense/kernel"] = (e, c.vocab_size)
    return shapes


def _is_float(arr: np.ndarray) -> bool:
    return np.issubdtype(arr.dtype, np.floating) or arr.dtype.name == "bfloat16"


def check_params(config: T5Config, flat: Mapping[str, np.ndarray], source: str) -> None:
    """Raise CheckpointError naming the first parameters that disagree with `config`."""
    want = expected_shapes(config)
    problems = []
    for name, shape in want.items():
        if name not in flat:
            problems.append(f"{name} is missing (expected shape {shape})")
        elif tuple(flat[name].shape) != shape:
            problems.append(f"{name} has shape {tuple(flat[name].shape)} but the config "
                            f"implies {shape}")
        elif not _is_float(flat[name]):
            problems.append(f"{name} has non-float dtype {flat[name].dtype}")
    extra = sorted(set(flat) - set(want))
    for name in extra:
        why = (" (the config says logits_via_embedding=True)"
               if name == "decoder/logits_dense/kernel" else "")
        problems.append(f"{name} {tuple(flat[name].shape)} is not a parameter of this "
                        f"config{why}")
    if problems:
        more = f"; and {len(problems) - 4} more" if len(problems) > 4 else ""
        raise CheckpointError(f"{source}: checkpoint and config disagree: "
                              + "; ".join(problems[:4]) + more)


def _normalize_dtypes(flat: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """float32 and bfloat16 stay as stored; other floats become float32."""
    out = {}
    for name, arr in flat.items():
        if arr.dtype.name in ("float32", "bfloat16") or not _is_float(arr):
            out[name] = arr
        else:
            out[name] = arr.astype(np.float32)
    return out


# ----------------------------------------------------------------------------------------
# Config inference
# ----------------------------------------------------------------------------------------

def _count_layers(flat: Mapping[str, Any], stack: str) -> int:
    n = 0
    while any(k.startswith(f"{stack}/layers_{n}/") for k in flat):
        n += 1
    return n


def _shape(flat: Mapping[str, np.ndarray], name: str, source: str) -> tuple[int, ...]:
    if name not in flat:
        raise CheckpointError(f"{source}: cannot infer the model config: parameter {name} is "
                              "missing")
    return tuple(flat[name].shape)


def infer_config(flat: Mapping[str, np.ndarray], *, hints: Mapping[str, Any] | None = None,
                 hints_source: str | None = None, source: str = "checkpoint") -> T5Config:
    """A T5Config from parameter shapes, completed by `hints` (a gin file) or a preset.

    Shapes give vocab, emb, mlp, layers, buckets, heads (the relative-position table is
    [H, K]) and head_dim; the max distance of the buckets, dropout and activations do not
    show in shapes and come from the hints, a preset of the same shape, or t5x's standard
    network (32 buckets -> 128), in that order.
    """
    hints = dict(hints or {})
    vocab, emb = _shape(flat, "token_embedder/embedding", source)
    heads, buckets = _shape(flat, "encoder/relpos_bias/rel_embedding", source)
    inner = _shape(flat, "encoder/layers_0/attention/query/kernel", source)[1]
    if inner % heads:
        raise CheckpointError(f"{source}: attention width {inner} is not a multiple of the "
                              f"{heads} heads in encoder/relpos_bias/rel_embedding")
    n_wi = 0
    while f"encoder/layers_0/mlp/wi_{n_wi}/kernel" in flat:
        n_wi += 1
    wi = "encoder/layers_0/mlp/wi_0/kernel" if n_wi else "encoder/layers_0/mlp/wi/kernel"
    shape_fields = dict(
        vocab_size=vocab, emb_dim=emb, num_heads=heads, head_dim=inner // heads,
        mlp_dim=_shape(flat, wi, source)[1],
        num_encoder_layers=_count_layers(flat, "encoder"),
        num_decoder_layers=_count_layers(flat, "decoder"),
        relative_attention_num_buckets=buckets,
        logits_via_embedding="decoder/logits_dense/kernel" not in flat)
    where = hints_source or "the config hints"
    for key, value in shape_fields.items():
        if key in hints and hints[key] != value:
            raise CheckpointError(f"{source}: {where} says {key}={hints[key]!r} but the "
                                  f"parameter shapes say {value!r}")
    activations = tuple(hints.get("mlp_activations") or
                        (("gelu", "linear") if n_wi == 2 else ("relu",) if n_wi == 0
                         else ("gelu",) * n_wi))
    if len(activations) != max(n_wi, 1):
        raise CheckpointError(f"{source}: {where} gives {len(activations)} mlp activations but "
                              f"the checkpoint has {max(n_wi, 1)} input kernels")
    fields = {**shape_fields, "mlp_activations": activations}
    preset = _matching_preset(fields)
    for key in ("relative_attention_max_distance", "dropout_rate", "layer_norm_epsilon"):
        if key in hints:
            fields[key] = hints[key]
        elif preset is not None:
            fields[key] = getattr(preset, key)
    if "relative_attention_max_distance" not in fields:
        if buckets not in _T5X_STANDARD_BUCKETS:
            raise CheckpointError(
                f"{source}: the relative-position max distance does not show in parameter "
                f"shapes, no config.gin lies beside the checkpoint and no known preset has "
                f"these shapes ({heads} heads x {inner // heads}, {buckets} buckets); pass "
                "config= (or --config-json) with relative_attention_max_distance")
        fields["relative_attention_max_distance"] = _T5X_STANDARD_BUCKETS[buckets]
    try:
        return T5Config(**fields)
    except ConfigError as e:
        raise CheckpointError(f"{source}: inferred config is invalid: {e}") from None


def _matching_preset(fields: Mapping[str, Any]) -> T5Config | None:
    for name in T5Config.preset_names():
        preset = T5Config.preset(name)
        if all(getattr(preset, k) == v for k, v in fields.items()):
            return preset
    return None


def config_from_json(data: Mapping[str, Any], source: str) -> T5Config:
    """A spot config (T5Config fields, optionally with format keys) or an HF config.json."""
    from spot.model.checkpoints_hf import config_from_hf, scales_tied_output

    if "d_model" in data:
        return config_from_hf(data, logits_via_embedding=scales_tied_output(data, False),
                              source=source)
    fields = {k: v for k, v in data.items() if k not in ("format", "format_version", "metadata")}
    try:
        return T5Config.from_dict(fields)
    except (ConfigError, TypeError) as e:
        raise ConfigError(f"{source}: not a T5 config: {e}") from None


def read_config_file(path: str | os.PathLike) -> T5Config:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    return config_from_json(data, str(path))


# ----------------------------------------------------------------------------------------
# Native format
# ----------------------------------------------------------------------------------------

def is_native(path: Path) -> bool:
    file = path / CONFIG_FILE
    if not file.is_file():
        return False
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(data, dict) and data.get("format") == FORMAT_NAME


def save_native(path: str | os.PathLike, config: T5Config, params: Mapping[str, Any], *,
                metadata: Mapping[str, Any] | None = None) -> Path:
    """Write `config.json` + `params.safetensors` into a temporary sibling folder, then
    rename it into place, so a crash never leaves a half-written checkpoint at `path`.

    An existing native checkpoint (or empty folder) at `path` is replaced; any other
    existing folder is refused rather than deleted. Replacing rewrites only spot's two
    files: whatever else the folder holds (a `vocab.model`, a README) is kept.
    """
    from safetensors.numpy import save_file

    from spot.model.layout import unstack_layers

    path = Path(path)
    flat = flatten_params(unstack_layers(params))  # always t5x's per-layer names on disk
    check_params(config, flat, f"save_native({path})")
    if path.exists() and not (path.is_dir() and (is_native(path) or not any(path.iterdir()))):
        raise CheckpointError(f"{path}: exists and is not a spot checkpoint; refusing to "
                              "replace it")
    header = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, **config.to_dict()}
    if metadata:
        header["metadata"] = dict(metadata)
    try:
        config_text = json.dumps(header, indent=2, sort_keys=True, default=_json_default) + "\n"
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: metadata is not JSON-serializable ({e})") from None
    tmp = temp_dir_for(path)
    try:
        save_file({k: np.ascontiguousarray(v) for k, v in flat.items()},
                  str(tmp / PARAMS_FILE), metadata={"format": FORMAT_NAME})
        (tmp / CONFIG_FILE).write_text(config_text, encoding="utf-8")
        finish_files(tmp, (PARAMS_FILE, CONFIG_FILE))
        replace_dir(tmp, path, owned=NATIVE_FILES)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (Path, os.PathLike)):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serializable")


def load_native(path: str | os.PathLike) -> tuple[T5Config, dict[str, np.ndarray], dict]:
    """Config, flat parameters and metadata of a native checkpoint folder."""
    from safetensors import safe_open

    path = Path(path)
    file = path / CONFIG_FILE
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{file}: unreadable ({e})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{file}: not a spot checkpoint config")
    version = data.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
        raise CheckpointError(f"{file}: format_version {version!r} is not supported "
                              f"(this spot reads up to {FORMAT_VERSION})")
    try:
        config = config_from_json(data, str(file))
    except ConfigError as e:
        raise CheckpointError(str(e)) from None
    params_file = path / PARAMS_FILE
    if not params_file.is_file():
        raise CheckpointError(f"{path}: {PARAMS_FILE} is missing")
    try:
        with safe_open(str(params_file), framework="numpy") as f:
            flat = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"{params_file}: not a readable safetensors file (truncated or "
                              f"corrupt: {e})") from None
    metadata = data.get("metadata") or {}
    return config, flat, metadata if isinstance(metadata, dict) else {}


# ----------------------------------------------------------------------------------------
# Detection and loading
# ----------------------------------------------------------------------------------------

def _load_t5x(location, display: str) -> tuple[dict[str, np.ndarray], dict, str | None]:
    from spot.model import checkpoints_t5x as t5x

    ckpt = t5x.resolve_checkpoint_dir(location)
    if ckpt is None:
        raise CheckpointError(f"{display}: no t5x 'checkpoint' file and no checkpoint_N "
                              "folders holding one")
    tree = t5x.open_tree(ckpt)
    names = [n for n in tree.leaves if not n.startswith("encoder/prompt/")]
    flat = tree.read(names)
    hints, hints_source = t5x.config_hints(ckpt)
    return flat, hints, hints_source


def _local_format(path: Path) -> str:
    from spot.model import checkpoints_hf as hf
    from spot.model import checkpoints_t5x as t5x

    if path.is_file():
        if path.name == t5x.MSGPACK_NAME:
            return "t5x-file"
        raise CheckpointError(f"{path}: is a file; pass the checkpoint folder instead")
    if is_native(path):
        return "native"
    if (path / t5x.MSGPACK_NAME).is_file():
        return "t5x"
    if hf.is_hf_folder(path):
        return "hf"
    if t5x.checkpoint_steps(t5x.LocalDir(path)):
        return "t5x"
    if (path / "_CHECKPOINT_METADATA").exists() or (path / "manifest.ocdbt").exists():
        raise CheckpointError(f"{path}: an orbax/OCDBT checkpoint; spot reads t5x msgpack+zarr "
                              "checkpoints, Hugging Face folders and its native format")
    if (path / "adapter_config.json").is_file():
        raise CheckpointError(f"{path}: a PEFT adapter, not a model checkpoint (load it with "
                              "spot.load_prompt)")
    if (path / CONFIG_FILE).is_file():
        raise CheckpointError(f"{path}: has config.json but no weights (looked for "
                              f"{PARAMS_FILE}, {', '.join(hf.WEIGHT_FILES)})")
    raise CheckpointError(
        f"{path}: not a checkpoint folder (no spot {CONFIG_FILE}+{PARAMS_FILE}, no t5x "
        f"'checkpoint' file or checkpoint_N folders, no Hugging Face weights)")


def load_checkpoint(path_or_id: str | os.PathLike, *,
                    config: T5Config | None = None) -> tuple[T5Config, dict]:
    """(config, nested dict of numpy arrays with t5x names) from any supported checkpoint.

    `config` overrides what the checkpoint says; every array is checked against it.
    """
    from spot.model import checkpoints_hf as hf
    from spot.model import checkpoints_t5x as t5x

    if config is not None and not isinstance(config, T5Config):
        raise ConfigError(f"config must be a spot T5Config, got {type(config).__name__}")
    text = os.fspath(path_or_id)
    stored_config: T5Config | None = None
    hints: dict = {}
    hints_source = None
    if text.startswith("gs://"):
        source = text
        flat, hints, hints_source = _load_t5x(t5x.gcs_location(text), text)
    else:
        path = Path(text).expanduser()
        source = str(path)
        if not path.exists():
            if not hf.looks_like_hub_id(text):
                raise CheckpointError(f"{path}: no such file or folder")
            path = hf.download_hub_model(text)
        fmt = _local_format(path)
        if fmt == "native":
            stored_config, flat, _ = load_native(path)
        elif fmt in ("t5x", "t5x-file"):
            folder = path.parent if fmt == "t5x-file" else path
            flat, hints, hints_source = _load_t5x(t5x.LocalDir(folder), str(folder))
        else:
            hf_config = hf.read_hf_config(path)
            weights, weight_file = hf.read_hf_weights(path)
            flat, tied = hf.hf_to_t5x(weights, hf_config, f"{path}/{weight_file}")
            if config is not None:
                pass  # the caller's config wins; shapes are checked below
            elif hf_config is not None:
                stored_config = hf.config_from_hf(hf_config, logits_via_embedding=tied,
                                                  source=f"{path}/config.json")
            else:
                hints = {"relative_attention_max_distance": 128}  # transformers' default
                hints_source = "transformers' defaults"
    flat = _normalize_dtypes(flat)
    if config is None:
        config = stored_config or infer_config(flat, hints=hints, hints_source=hints_source,
                                               source=source)
    check_params(config, flat, source)
    return config, unflatten_params(flat)


def checkpoint_format(path_or_id: str | os.PathLike) -> str:
    """'native', 't5x', 'hf' or 'hub' (without loading anything)."""
    from spot.model import checkpoints_hf as hf

    text = os.fspath(path_or_id)
    if text.startswith("gs://"):
        return "t5x"
    path = Path(text).expanduser()
    if not path.exists():
        if hf.looks_like_hub_id(text):
            return "hub"
        raise CheckpointError(f"{path}: no such file or folder")
    return _local_format(path).removesuffix("-file")


__all__ = ["load_checkpoint", "save_native", "load_native", "flatten_params",
           "unflatten_params", "expected_shapes", "check_params", "infer_config",
           "read_config_file", "checkpoint_format"]
