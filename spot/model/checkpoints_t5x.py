"""t5x checkpoints: a msgpack tree whose large leaves are tensorstore zarr specs.

A t5x checkpoint folder `checkpoint_N/` holds a msgpack file `checkpoint` with
`{"version": V, "optimizer": {"target": params, "state": ...}}`. Small leaves are inline
flax msgpack arrays (extension type 1: packed shape, dtype name and raw bytes); large leaves
are tensorstore specs (`driver: zarr`, `kvstore: {driver: gfile, path: <name>}`) naming a
sibling zarr folder such as `target.encoder.layers_0.attention.query.kernel`.

The `gfile` kvstore only exists inside Google's stack, so every spec is rewritten here to the
real location: the local `file` driver beside the msgpack file, or the `gcs` driver for
`gs://` paths. Only the last component of a stored path is used, so a spec can never reach
outside its checkpoint folder.
"""

from __future__ import annotations

import ast
import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from spot.errors import CheckpointError
from spot.fileio import confined_path

MSGPACK_NAME = "checkpoint"
PROMPT_PATH = "encoder/prompt/prompt/prompt"
_CHECKPOINT_DIR = re.compile(r"^checkpoint_(\d+)$")
_NUMERIC_DTYPES = {"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
                   "uint64", "float16", "float32", "float64", "bfloat16"}


# ----------------------------------------------------------------------------------------
# Flax msgpack (also used for Hugging Face `flax_model.msgpack`).
# ----------------------------------------------------------------------------------------

def _numpy_dtype(name: str) -> np.dtype:
    if name not in _NUMERIC_DTYPES:
        raise ValueError(f"unsupported array dtype {name!r}")
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def _ext_hook(code: int, data: bytes) -> Any:
    import msgpack

    if code in (1, 3):  # ndarray, numpy scalar: (shape, dtype name, C-order bytes)
        shape, dtype_name, buffer = msgpack.unpackb(data, raw=True)
        if isinstance(dtype_name, bytes):
            dtype_name = dtype_name.decode("ascii", "replace")
        arr = np.frombuffer(buffer, dtype=_numpy_dtype(dtype_name)).reshape(shape).copy()
        return arr if code == 1 else arr[()]
    if code == 2:  # Python complex
        real, imag = msgpack.unpackb(data)
        return complex(real, imag)
    raise ValueError(f"unknown msgpack extension type {code}")


def _unchunk(tree: Any) -> Any:
    """Reassemble arrays that flax split into flat chunks to stay under msgpack's 2 GiB limit."""
    if not isinstance(tree, dict):
        return tree
    if tree.get("__msgpack_chunked_array__"):
        shape = tuple(tree["shape"][str(i)] for i in range(len(tree["shape"])))
        chunks = [tree["chunks"][str(i)] for i in range(len(tree["chunks"]))]
        return np.concatenate(chunks).reshape(shape)
    return {k: _unchunk(v) for k, v in tree.items()}


def decode_flax_msgpack(raw: bytes, source: str) -> dict:
    """Decode a flax-serialized tree without executing anything stored in it."""
    import msgpack

    try:
        tree = msgpack.unpackb(raw, ext_hook=_ext_hook, raw=False, strict_map_key=False)
        tree = _unchunk(tree)
    except Exception as e:  # noqa: BLE001 - every decoding failure means a corrupt file
        raise CheckpointError(
            f"{source}: not a readable flax msgpack file (truncated or corrupt: {e})") from None
    if not isinstance(tree, dict):
        raise CheckpointError(f"{source}: expected a msgpack map at the top level, "
                              f"got {type(tree).__name__}")
    return tree


# ----------------------------------------------------------------------------------------
# Where a checkpoint lives: a local folder or a gs:// prefix read through tensorstore.
# ----------------------------------------------------------------------------------------

class LocalDir:
    def __init__(self, path: Path):
        self.path = path

    def __str__(self) -> str:
        return str(self.path)

    def read(self, key: str) -> bytes | None:
        p = self.path / key
        return p.read_bytes() if p.is_file() else None

    def child(self, name: str) -> "LocalDir":
        return LocalDir(self.path / name)

    def subdirs(self) -> list[str]:
        return [p.name for p in self.path.iterdir() if p.is_dir()] if self.path.is_dir() else []

    def parent(self) -> "LocalDir":
        return LocalDir(self.path.parent)

    def zarr_kvstore(self, name: str) -> dict:
        return {"driver": "file", "path": str(confined_path(self.path, name)) + "/"}


def remote_timeout() -> float:
    """Seconds a remote store may take to answer one request ($SPOT_REMOTE_TIMEOUT, 60)."""
    raw = os.environ.get("SPOT_REMOTE_TIMEOUT", "").strip() or "60"
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not math.isfinite(value) or value <= 0:
        raise CheckpointError(f"SPOT_REMOTE_TIMEOUT must be a positive number of seconds, "
                              f"got {raw!r}")
    return value


def _wait(future, display: str, what: str):
    """A tensorstore future's result, or a clear error once the store stops answering."""
    seconds = remote_timeout()
    try:
        return future.result(timeout=seconds)
    except TimeoutError:
        raise CheckpointError(
            f"{display}: no answer within {seconds:g} s while {what} (no network, or no "
            f"credentials for this store?); copy the checkpoint to this machine and pass "
            f"--model PATH, or raise SPOT_REMOTE_TIMEOUT") from None


class KvStoreDir:
    """A folder inside any tensorstore kvstore (gcs in practice; `file` in tests)."""

    def __init__(self, spec: dict, display: str):
        self.spec = dict(spec)
        path = str(self.spec.get("path", "")).rstrip("/")
        self.spec["path"] = path + "/" if path else ""
        self.display = display
        self._kv = None

    def __str__(self) -> str:
        return self.display

    def _store(self):
        if self._kv is None:
            import tensorstore as ts

            try:
                self._kv = _wait(ts.KvStore.open(self.spec), self.display, "opening it")
            except CheckpointError:
                raise
            except Exception as e:  # noqa: BLE001
                raise CheckpointError(f"{self.display}: cannot open ({e})") from None
        return self._kv

    def read(self, key: str) -> bytes | None:
        try:
            result = _wait(self._store().read(key), self.display, f"reading {key}")
        except CheckpointError:
            raise
        except Exception as e:  # noqa: BLE001
            raise CheckpointError(f"{self.display}/{key}: cannot be read ({e})") from None
        return bytes(result.value) if result.state == "value" else None

    def child(self, name: str) -> "KvStoreDir":
        return KvStoreDir({**self.spec, "path": self.spec["path"] + name},
                          f"{self.display.rstrip('/')}/{name}")

    def parent(self) -> "KvStoreDir":
        parts = self.spec["path"].rstrip("/").split("/")
        display = self.display.rstrip("/").rsplit("/", 1)[0]
        return KvStoreDir({**self.spec, "path": "/".join(parts[:-1])}, display)

    def subdirs(self) -> list[str]:
        try:
            keys = _wait(self._store().list(), self.display, "listing it")
        except CheckpointError:
            raise
        except Exception as e:  # noqa: BLE001
            raise CheckpointError(f"{self.display}: cannot be listed ({e})") from None
        names = set()
        for key in keys:
            key = key.decode() if isinstance(key, bytes) else str(key)
            if "/" in key:
                names.add(key.split("/", 1)[0])
        return sorted(names)

    def zarr_kvstore(self, name: str) -> dict:
        _check_component(name, self.display)
        return {**self.spec, "path": self.spec["path"] + name + "/"}


def gcs_location(url: str) -> KvStoreDir:
    """`gs://bucket/some/prefix` -> a folder in tensorstore's gcs kvstore."""
    if not url.startswith("gs://"):
        raise CheckpointError(f"{url!r} is not a gs:// path")
    rest = url[len("gs://"):].strip("/")
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise CheckpointError(f"{url!r} names no bucket")
    for part in prefix.split("/") if prefix else []:
        _check_component(part, url)
    return KvStoreDir({"driver": "gcs", "bucket": bucket, "path": prefix}, url.rstrip("/"))


def _check_component(name: str, where: str) -> None:
    if not name or name in (".", "..") or "\x00" in name or "/" in name:
        raise CheckpointError(f"{where}: invalid path component {name!r}")


# ----------------------------------------------------------------------------------------
# Finding and reading a checkpoint.
# ----------------------------------------------------------------------------------------

def checkpoint_steps(location: LocalDir | KvStoreDir) -> list[tuple[int, str]]:
    """`checkpoint_N` subfolders holding a msgpack `checkpoint` file, sorted by N."""
    found = []
    for name in location.subdirs():
        m = _CHECKPOINT_DIR.match(name)
        if m and location.child(name).read(MSGPACK_NAME) is not None:
            found.append((int(m.group(1)), name))
    return sorted(found)


def resolve_checkpoint_dir(location: LocalDir | KvStoreDir) -> LocalDir | KvStoreDir | None:
    """The checkpoint folder itself, or the highest `checkpoint_N` under a model folder."""
    if location.read(MSGPACK_NAME) is not None:
        return location
    steps = checkpoint_steps(location)
    return location.child(steps[-1][1]) if steps else None


@dataclass
class T5xTree:
    """The `target` tree of a t5x checkpoint with its large leaves still unread."""

    location: LocalDir | KvStoreDir
    leaves: dict[str, Any]   # flat '/'-joined name -> ndarray or tensorstore spec dict

    def read(self, names: Iterable[str]) -> dict[str, np.ndarray]:
        return read_leaves(self.location, {n: self.leaves[n] for n in names})


def open_tree(location: LocalDir | KvStoreDir) -> T5xTree:
    raw = location.read(MSGPACK_NAME)
    source = f"{location}/{MSGPACK_NAME}"
    if raw is None:
        raise CheckpointError(f"{location}: no t5x msgpack file named '{MSGPACK_NAME}'")
    tree = decode_flax_msgpack(raw, source)
    target = None
    if isinstance(tree.get("optimizer"), dict):
        target = tree["optimizer"].get("target")
    if target is None:
        target = tree.get("target")
    if not isinstance(target, dict):
        raise CheckpointError(
            f"{source}: holds no parameter tree (expected 'optimizer/target' or 'target'; "
            f"top-level keys: {sorted(tree)})")
    leaves: dict[str, Any] = {}
    _flatten_target(target, "", leaves, source)
    return T5xTree(location, leaves)


def _is_spec(node: Any) -> bool:
    return isinstance(node, dict) and "driver" in node and "kvstore" in node


def _flatten_target(node: dict, prefix: str, out: dict, source: str) -> None:
    for key, value in node.items():
        name = f"{prefix}{key}"
        if _is_spec(value) or isinstance(value, np.ndarray):
            out[name] = value
        elif isinstance(value, dict):
            _flatten_target(value, name + "/", out, source)
        elif isinstance(value, (np.generic, int, float)):
            out[name] = np.asarray(value)
        else:
            raise CheckpointError(f"{source}: parameter {name} holds an unexpected "
                                  f"{type(value).__name__}, not an array or tensorstore spec")


def _leaf_folder(spec: dict, name: str, source: str) -> str:
    kv = spec.get("kvstore")
    path = kv.get("path") if isinstance(kv, dict) else kv
    if isinstance(spec.get("path"), str):  # older specs split base folder and array path
        path = f"{path or ''}/{spec['path']}"
    if not isinstance(path, str) or not path.strip("/"):
        raise CheckpointError(f"{source}: parameter {name} has a tensorstore spec without a path")
    return path.rstrip("/").rsplit("/", 1)[-1]


def array_spec(location: LocalDir | KvStoreDir, spec: dict, name: str) -> dict:
    """Rewrite a stored spec so tensorstore reads the zarr folder beside the msgpack file."""
    folder = _leaf_folder(spec, name, str(location))
    out: dict[str, Any] = {"driver": spec.get("driver", "zarr"),
                           "kvstore": location.zarr_kvstore(folder)}
    if out["driver"] not in ("zarr", "zarr3", "n5"):
        raise CheckpointError(f"{location}: parameter {name} uses the unsupported tensorstore "
                              f"driver {out['driver']!r}")
    if isinstance(spec.get("metadata"), dict):
        out["metadata"] = spec["metadata"]
    return out


def _check_local_chunks(folder: Path, name: str) -> None:
    """A zarr folder without fill value must hold every chunk; a missing one means a torn copy
    (tensorstore would silently read zeros)."""
    meta_path = folder / ".zarray"
    if not meta_path.is_file():
        raise CheckpointError(f"{folder}: missing zarr metadata (.zarray) for parameter {name}")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        shape, chunks = list(meta["shape"]), list(meta["chunks"])
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"{meta_path}: corrupt zarr metadata for parameter {name} ({e})"
                              ) from None
    if len(shape) != len(chunks):
        raise CheckpointError(f"{meta_path}: shape {shape} and chunks {chunks} of parameter "
                              f"{name} have different ranks")
    if meta.get("fill_value") is not None:
        return
    sep = meta.get("dimension_separator", ".")
    grid = [max(1, math.ceil(s / c)) if c else 1 for s, c in zip(shape, chunks, strict=True)]
    for index in np.ndindex(*grid):
        key = sep.join(str(i) for i in index) if index else "0"
        if not (folder / key).is_file():
            raise CheckpointError(
                f"{folder}: chunk {key!r} of parameter {name} is missing (truncated copy?)")


def read_leaves(location: LocalDir | KvStoreDir, leaves: dict[str, Any]) -> dict[str, np.ndarray]:
    """Inline arrays as they are; zarr leaves read concurrently through tensorstore."""
    import tensorstore as ts

    out: dict[str, np.ndarray] = {}
    pending = {}
    context = ts.Context()
    for name, leaf in leaves.items():
        if isinstance(leaf, np.ndarray):
            out[name] = leaf
            continue
        spec = array_spec(location, leaf, name)
        if isinstance(location, LocalDir) and spec["driver"] == "zarr":
            _check_local_chunks(Path(spec["kvstore"]["path"]), name)
        try:
            pending[name] = ts.open(spec, read=True, open=True, context=context)
        except Exception as e:  # noqa: BLE001
            raise CheckpointError(f"{location}: parameter {name}: bad tensorstore spec ({e})"
                                  ) from None
    reads = {}
    remote = isinstance(location, KvStoreDir)
    for name, future in pending.items():
        try:
            opened = (_wait(future, str(location), f"opening parameter {name}") if remote
                      else future.result())
            reads[name] = opened.read()
        except CheckpointError:
            raise
        except Exception as e:  # noqa: BLE001
            raise CheckpointError(f"{location}: parameter {name} cannot be opened ({e})") from None
    for name, future in reads.items():
        try:
            out[name] = np.asarray(future.result())
        except Exception as e:  # noqa: BLE001
            raise CheckpointError(
                f"{location}: parameter {name} cannot be read (corrupt zarr chunk? {e})") from None
    return out


# ----------------------------------------------------------------------------------------
# Config hints from a gin file beside the checkpoint.
# ----------------------------------------------------------------------------------------

_GIN_BINDING = re.compile(r"^\s*([\w.]+)\s*=\s*(.+?)\s*$")
_GIN_FIELDS = {
    "vocab_size", "emb_dim", "num_heads", "head_dim", "mlp_dim", "num_encoder_layers",
    "num_decoder_layers", "dropout_rate", "mlp_activations", "logits_via_embedding",
    "relative_attention_num_buckets", "relative_attention_max_distance", "layer_norm_epsilon",
}
_GIN_ALIASES = {"RelativePositionBiases.num_buckets": "relative_attention_num_buckets",
                "RelativePositionBiases.max_distance": "relative_attention_max_distance"}


def parse_gin(text: str) -> dict[str, Any]:
    """T5Config bindings from a t5x gin file (single-line literals and %MACRO references)."""
    macros: dict[str, Any] = {}
    bindings: list[tuple[str, str]] = []
    for line in text.splitlines():
        line = line.split("#", 1)[0]
        m = _GIN_BINDING.match(line)
        if not m:
            continue
        key, value = m.groups()
        if "." not in key:
            try:
                macros[key] = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                pass
        else:
            bindings.append((key, value))
    hints: dict[str, Any] = {}
    for key, value in bindings:
        field = None
        for alias, target in _GIN_ALIASES.items():
            if key.endswith(alias):
                field = target
        if field is None and ".T5Config." in f".{key}":
            field = key.rsplit(".", 1)[-1]
        if field not in _GIN_FIELDS:
            continue
        if value.startswith("%"):
            if value[1:] in macros:
                hints[field] = macros[value[1:]]
            continue
        try:
            hints[field] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            continue
    if "mlp_activations" in hints:
        hints["mlp_activations"] = tuple(hints["mlp_activations"])
    return hints


def config_hints(location: LocalDir | KvStoreDir) -> tuple[dict[str, Any], str | None]:
    """Bindings from `config.gin` in the checkpoint folder or its model folder."""
    for folder in (location, location.parent()):
        for name in ("config.gin", "operative_config.gin"):
            try:
                raw = folder.read(name)
            except (CheckpointError, OSError):
                raw = None
            if raw is not None:
                return parse_gin(raw.decode("utf-8", "replace")), f"{folder}/{name}"
    return {}, None
