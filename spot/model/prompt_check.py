"""The one check of a prompt array: every reader of prompts and task embeddings calls it.

`validate_prompt` is behind `spot.model.prompt` (initializers, `T5(..., prompt=...)`), the
prompt files (`spot.model.prompt_files.load_prompt`, `save_prompt`, `export_peft`), task
embeddings (`spot.retrieval.similarity.as_embedding`) and the `--init` check of a training run,
so one problem gets one error type (`PromptError`) and one message wherever it is found.
It imports nothing but numpy, so it stays a leaf those modules can share without a cycle.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from spot.errors import PromptError


def _is_float(dtype: np.dtype) -> bool:
    # bfloat16 (ml_dtypes) is not an np.floating subtype but converts to float32/64 exactly.
    return np.issubdtype(dtype, np.floating) or dtype.name == "bfloat16"


def _first_bad(arr: np.ndarray, finite: np.ndarray) -> str:
    where = np.argwhere(~finite)[0]
    lead = f"example {where[0]}, " if arr.ndim == 3 else ""
    return f"{lead}token {where[-2]}, dim {where[-1]}"


def validate_prompt(prompt: Any, emb_dim: int | None = None, *, length: int | None = None,
                    source: str = "prompt", batched: bool = False,
                    dtype: Any = np.float32) -> np.ndarray:
    """`prompt` as a C-contiguous `dtype` array [L, E] (or [B, L, E] when `batched`).

    Checks, in order, each failure a `PromptError` naming `source`: readable as an array;
    floating point (float16/32/64 or bfloat16: integer token ids are not a prompt); the
    rank; no empty axis; width `emb_dim` and length `length` where given; every value
    finite once converted to `dtype` (a float64 beyond float32's range is not).
    """
    try:
        arr = np.asarray(prompt)
    except Exception as e:  # noqa: BLE001 - ragged lists and the like are user errors
        raise PromptError(f"{source}: is not an array ({e})") from None
    if not _is_float(arr.dtype):
        raise PromptError(f"{source}: expected floating-point numbers, got dtype {arr.dtype}")
    if arr.ndim != 2 and not (batched and arr.ndim == 3):
        want = "a 2-D [length, width] or 3-D [batch, length, width]" if batched else (
            "a 2-D [length, width]")
        raise PromptError(f"{source}: expected {want} array, got shape {tuple(arr.shape)}")
    if 0 in arr.shape:
        raise PromptError(f"{source}: has an empty shape {tuple(arr.shape)}")
    if emb_dim is not None and arr.shape[-1] != int(emb_dim):
        raise PromptError(f"{source}: prompt width {arr.shape[-1]} does not match the model's "
                          f"embedding size {emb_dim}")
    if length is not None and arr.shape[-2] != int(length):
        raise PromptError(f"{source}: length {arr.shape[-2]} does not match the expected {length}")
    with np.errstate(over="ignore", invalid="ignore"):
        arr = np.ascontiguousarray(arr, dtype=dtype)
    finite = np.isfinite(arr)
    if not finite.all():
        bad = int(finite.size - np.count_nonzero(finite))
        raise PromptError(f"{source}: has a non-finite value at {_first_bad(arr, finite)} "
                          f"({bad} of {finite.size} values are NaN/Inf)")
    return arr
