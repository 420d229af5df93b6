"""Soft prompt files: read every layout prompts come in, write spot's own, export to PEFT.

Readable layouts (`load_prompt`):
  * `.npy` (never unpickled: `allow_pickle=False`), e.g. the reference release's prompts;
  * `.safetensors` holding `prompt`, PEFT's `prompt_embeddings`, or a single tensor;
  * the reference t5x code's numpy checkpoints: raw `.npy` bytes in a suffix-less file
    `numpy_checkpoints/checkpoint_N/encoder.prompt.prompt.prompt` (the file, its folder, or
    the `numpy_checkpoints` folder, where the highest N wins);
  * a PEFT prompt-tuning adapter folder (`adapter_config.json` + `adapter_model.safetensors`);
  * a t5x checkpoint whose parameters hold `target/encoder/prompt/prompt/prompt`.

Written layout (`save_prompt`): `.npy` or `.safetensors` (tensor `prompt`), float32 [L, E],
plus a sidecar `<file>.json` with shape, dtype and the caller's metadata.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from spot.errors import CheckpointError, PromptError
from spot.fileio import atomic_write_bytes, atomic_write_text, finish_files, replace_dir, temp_dir_for
from spot.model.prompt_check import validate_prompt

SIDECAR_FORMAT = "spot-prompt"
SIDECAR_VERSION = 1
NUMPY_PROMPT_FILE = "encoder.prompt.prompt.prompt"
PEFT_CONFIG = "adapter_config.json"
PEFT_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
_CHECKPOINT_DIR = re.compile(r"^checkpoint_(\d+)$")


# ----------------------------------------------------------------------------------------
# Validation (one check for every prompt: `spot.model.prompt_check.validate_prompt`)
# ----------------------------------------------------------------------------------------

def check_prompt_width(prompt: Any, emb_dim: int, *, source: str = "prompt") -> None:
    """A prompt must be a valid [L, E] array as wide as the model's embeddings."""
    validate_prompt(prompt, emb_dim, source=source)


# ----------------------------------------------------------------------------------------
# Readers
# ----------------------------------------------------------------------------------------

def _read_npy(path: Path) -> np.ndarray:
    """`.npy` (or `.npz`) bytes; pickled content is refused, never loaded."""
    try:
        with open(path, "rb") as f:
            head = f.read(6)
            f.seek(0)
            if head != b"\x93NUMPY" and not head.startswith(b"PK\x03\x04"):
                what = ("pickled Python data" if head[:1] == b"\x80"
                        else "neither .npy nor .npz data")
                raise PromptError(f"{path}: holds {what}; spot reads prompts only from .npy, "
                                  ".safetensors, PEFT adapters and t5x checkpoints (and never "
                                  "unpickles)")
            arr = np.load(f, allow_pickle=False)
            if isinstance(arr, np.lib.npyio.NpzFile):
                arr = {k: arr[k] for k in arr.files}
    except PromptError:
        raise
    except ValueError as e:
        if "pickle" in str(e).lower() or "object" in str(e).lower():
            raise PromptError(f"{path}: holds pickled Python objects; spot never unpickles "
                              "prompt files (save plain float arrays instead)") from None
        raise PromptError(f"{path}: not a readable .npy file ({e})") from None
    except (OSError, EOFError) as e:
        raise PromptError(f"{path}: not a readable .npy file ({e})") from None
    if isinstance(arr, dict):
        return _pick_tensor(arr, path)
    return arr


def _pick_tensor(tensors: Mapping[str, np.ndarray], source: Any) -> np.ndarray:
    for key in ("prompt", "prompt_embeddings"):
        if key in tensors:
            return tensors[key]
    if len(tensors) == 1:
        return next(iter(tensors.values()))
    raise PromptError(f"{source}: holds {len(tensors)} tensors "
                      f"({', '.join(sorted(tensors)[:5])}) and none is named 'prompt' or "
                      "'prompt_embeddings'")


def _read_safetensors_all(path: Path) -> dict[str, np.ndarray]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            return {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
        raise PromptError(f"{path}: not a readable safetensors file (truncated or corrupt: "
                          f"{e})") from None


def _read_safetensors(path: Path) -> np.ndarray:
    return _pick_tensor(_read_safetensors_all(path), path)


def _highest_checkpoint(folder: Path, marker: str) -> Path | None:
    best = None
    for child in folder.iterdir():
        m = _CHECKPOINT_DIR.match(child.name)
        if m and (child / marker).is_file() and (best is None or int(m.group(1)) > best[0]):
            best = (int(m.group(1)), child)
    return best[1] if best else None


def _read_t5x_prompt(folder: Path) -> np.ndarray:
    from spot.model import checkpoints_t5x as t5x

    try:
        tree = t5x.open_tree(t5x.LocalDir(folder))
        if t5x.PROMPT_PATH not in tree.leaves:
            raise PromptError(f"{folder}: this t5x checkpoint holds no prompt "
                              f"(no target/{t5x.PROMPT_PATH})")
        return tree.read([t5x.PROMPT_PATH])[t5x.PROMPT_PATH]
    except CheckpointError as e:
        raise PromptError(str(e)) from None


def _read_dir(path: Path) -> np.ndarray:
    if (path / PEFT_CONFIG).is_file():
        return load_peft_prompt(path)
    if (path / NUMPY_PROMPT_FILE).is_file():
        return _read_npy(path / NUMPY_PROMPT_FILE)
    if (path / "checkpoint").is_file():
        return _read_t5x_prompt(path)
    if (path / "numpy_checkpoints").is_dir():
        return _read_dir(path / "numpy_checkpoints")
    step = _highest_checkpoint(path, NUMPY_PROMPT_FILE)
    if step is not None:
        return _read_npy(step / NUMPY_PROMPT_FILE)
    step = _highest_checkpoint(path, "checkpoint")
    if step is not None:
        return _read_t5x_prompt(step)
    raise PromptError(
        f"{path}: a folder with no prompt in it (looked for a PEFT {PEFT_CONFIG}, "
        f"{NUMPY_PROMPT_FILE}, a t5x 'checkpoint' file, numpy_checkpoints/ or checkpoint_N/)")


def read_prompt_raw(path: str | os.PathLike) -> np.ndarray:
    """The stored array, in its stored dtype (what `spot prompt info` reports)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise PromptError(f"{path}: no such prompt file or folder")
    if path.is_dir():
        return _read_dir(path)
    if path.name == PEFT_CONFIG or (path.name in PEFT_WEIGHTS
                                    and (path.parent / PEFT_CONFIG).is_file()):
        return load_peft_prompt(path.parent)
    if path.name == "checkpoint":
        return _read_t5x_prompt(path.parent)
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    return _read_npy(path)


def load_prompt(path: str | os.PathLike) -> np.ndarray:
    """A prompt [L, E] as float32 from any supported layout (see the module docstring)."""
    return validate_prompt(read_prompt_raw(path), source=str(path))


# ----------------------------------------------------------------------------------------
# Writer and metadata
# ----------------------------------------------------------------------------------------

def sidecar_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".json")


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serializable")


def prompt_bytes(prompt: np.ndarray, suffix: str) -> bytes:
    if suffix == ".safetensors":
        from safetensors.numpy import save

        return save({"prompt": np.ascontiguousarray(prompt)}, metadata={"format": SIDECAR_FORMAT})
    buf = io.BytesIO()
    np.save(buf, prompt, allow_pickle=False)
    return buf.getvalue()


def save_prompt(path: str | os.PathLike, prompt: Any,
                metadata: Mapping[str, Any] | None = None) -> Path:
    """Write a float32 prompt atomically as `.npy` (the default) or `.safetensors`, with
    `<path>.json` beside it holding shape, dtype and `metadata`. Returns the prompt path."""
    path = Path(path)
    if path.suffix == "":
        path = path.with_name(path.name + ".npy")
    if path.suffix not in (".npy", ".safetensors"):
        raise PromptError(f"{path}: prompt files end in .npy or .safetensors, not {path.suffix}")
    arr = validate_prompt(prompt, source=str(path))
    sidecar = {"format": SIDECAR_FORMAT, "format_version": SIDECAR_VERSION,
               "shape": list(arr.shape), "dtype": str(arr.dtype),
               "metadata": dict(metadata or {})}
    try:
        sidecar_text = json.dumps(sidecar, indent=2, sort_keys=True, default=_jsonable) + "\n"
    except (TypeError, ValueError) as e:
        raise PromptError(f"{path}: metadata is not JSON-serializable ({e})") from None
    atomic_write_bytes(path, prompt_bytes(arr, path.suffix))
    atomic_write_text(sidecar_path(path), sidecar_text)
    return path


def load_prompt_metadata(path: str | os.PathLike) -> dict:
    """The sidecar of a prompt written by `save_prompt` ({} when there is none); for a PEFT
    adapter folder, its adapter config under `peft`."""
    path = Path(path).expanduser()
    if path.is_dir() and (path / PEFT_CONFIG).is_file():
        return {"peft": _read_peft_config(path)}
    side = sidecar_path(path)
    if not side.is_file():
        return {}
    try:
        data = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PromptError(f"{side}: unreadable prompt metadata ({e})") from None
    if not isinstance(data, dict):
        raise PromptError(f"{side}: prompt metadata must be a JSON object")
    return data


# ----------------------------------------------------------------------------------------
# PEFT
# ----------------------------------------------------------------------------------------

def _read_peft_config(folder: Path) -> dict:
    file = folder / PEFT_CONFIG
    try:
        cfg = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PromptError(f"{file}: unreadable PEFT adapter config ({e})") from None
    if not isinstance(cfg, dict):
        raise PromptError(f"{file}: expected a JSON object")
    return cfg


def load_peft_prompt(folder: str | os.PathLike) -> np.ndarray:
    """The encoder prompt rows of a PEFT prompt-tuning adapter; other PEFT types are refused."""
    folder = Path(folder)
    cfg = _read_peft_config(folder)
    kind = str(cfg.get("peft_type", "")).upper()
    if kind != "PROMPT_TUNING":
        raise PromptError(f"{folder}: a {kind or 'untyped'} PEFT adapter, not a prompt-tuning "
                          "one; only PROMPT_TUNING adapters hold a soft prompt")
    try:
        length = int(cfg["num_virtual_tokens"])
        width = int(cfg["token_dim"])
        submodules = int(cfg.get("num_transformer_submodules") or 1)
    except (KeyError, TypeError, ValueError) as e:
        raise PromptError(f"{folder / PEFT_CONFIG}: missing or bad field {e}") from None
    weights = None
    for name in PEFT_WEIGHTS:
        if (folder / name).is_file():
            weights = folder / name
            break
    if weights is None:
        raise PromptError(f"{folder}: no adapter weights ({' or '.join(PEFT_WEIGHTS)})")
    if weights.suffix == ".safetensors":
        tensors = _read_safetensors_all(weights)
    else:
        try:
            from spot.model.checkpoints_hf import _read_torch_bin

            tensors = _read_torch_bin(weights)
        except CheckpointError as e:
            raise PromptError(str(e)) from None
    if "prompt_embeddings" not in tensors:
        raise PromptError(f"{weights}: no 'prompt_embeddings' tensor (has "
                          f"{', '.join(sorted(tensors)[:5]) or 'nothing'})")
    arr = tensors["prompt_embeddings"]
    if arr.ndim != 2 or arr.shape[-1] != width:
        raise PromptError(f"{weights}: prompt_embeddings has shape {tuple(arr.shape)} but "
                          f"{PEFT_CONFIG} says token_dim {width}")
    if arr.shape[0] != length * submodules:
        raise PromptError(f"{weights}: prompt_embeddings has {arr.shape[0]} rows but "
                          f"{PEFT_CONFIG} says {length} virtual tokens x {submodules} "
                          "transformer submodules")
    # Seq2seq prompt tuning feeds the first num_virtual_tokens rows to the encoder.
    return arr[:length]


def export_peft(prompt: Any, out_dir: str | os.PathLike, *, base_model: str,
                config: Any) -> Path:
    """Write a PEFT prompt-tuning adapter (seq2seq, encoder rows only) for `base_model`.

    The folder is assembled in a temporary sibling and renamed into place. An existing PEFT
    adapter folder (or empty folder) at `out_dir` is replaced; anything else is refused.
    Replacing rewrites only the adapter's config and weights; other files there are kept.
    """
    out_dir = Path(out_dir)
    arr = validate_prompt(prompt, config.emb_dim, source="prompt")
    if out_dir.exists() and not (out_dir.is_dir() and (
            (out_dir / PEFT_CONFIG).is_file() or not any(out_dir.iterdir()))):
        raise PromptError(f"{out_dir}: exists and is not a PEFT adapter folder; refusing to "
                          "replace it")
    adapter_config = {
        "peft_type": "PROMPT_TUNING", "task_type": "SEQ_2_SEQ_LM",
        "num_virtual_tokens": int(arr.shape[0]), "token_dim": int(arr.shape[1]),
        "num_transformer_submodules": 1, "num_layers": int(config.num_encoder_layers),
        "num_attention_heads": int(config.num_heads),
        "base_model_name_or_path": str(base_model), "prompt_tuning_init": "RANDOM",
        "prompt_tuning_init_text": None, "tokenizer_name_or_path": None,
        "tokenizer_kwargs": None, "inference_mode": True, "revision": None,
        "modules_to_save": None, "auto_mapping": None,
    }
    from safetensors.numpy import save_file

    tmp = temp_dir_for(out_dir)
    try:
        save_file({"prompt_embeddings": np.ascontiguousarray(arr)},
                  str(tmp / PEFT_WEIGHTS[0]), metadata={"format": "pt"})
        (tmp / PEFT_CONFIG).write_text(json.dumps(adapter_config, indent=2, sort_keys=True)
                                       + "\n", encoding="utf-8")
        finish_files(tmp, (PEFT_WEIGHTS[0], PEFT_CONFIG))
        replace_dir(tmp, out_dir, owned=(PEFT_CONFIG, *PEFT_WEIGHTS))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def prompt_stats(prompt: np.ndarray) -> dict[str, Any]:
    """What `spot prompt info` prints: per-token L2 norms and overall moments."""
    arr = np.asarray(prompt, np.float32)
    norms = np.linalg.norm(arr.astype(np.float64), axis=-1)
    return {"shape": list(arr.shape), "token_norm_mean": float(norms.mean()),
            "token_norm_min": float(norms.min()), "token_norm_max": float(norms.max()),
            "mean": float(arr.mean(dtype=np.float64)), "std": float(arr.std(dtype=np.float64))}


__all__ = ["load_prompt", "save_prompt", "load_prompt_metadata", "check_prompt_width",
           "export_peft", "load_peft_prompt", "read_prompt_raw", "prompt_stats",
           "sidecar_path"]
