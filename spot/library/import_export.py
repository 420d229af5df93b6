"""Prompt files in and out of a library: bulk import of released prompts, and export.

Both work on any object with the library's reading and adding methods (`PromptLibrary`
delegates its `import_prompts` and `export` here), so this module never imports the store.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Protocol

import numpy as np

from spot.errors import ConfigError, LibraryError, PromptError
from spot.library.entry import Entry

# A folder holding one of these is a single prompt (PEFT adapter, t5x checkpoint), not a
# folder of prompt files.
PROMPT_FOLDER_MARKERS = ("adapter_config.json", "checkpoint", "numpy_checkpoints",
                         "encoder.prompt.prompt.prompt")
_RELEASE_PREFIX = "prompts_"  # the prompt-tuning release names its folders prompts_<model>


class LibraryFiles(Protocol):
    """The part of `PromptLibrary` that import and export use."""

    root: Path

    def get(self, entry: Entry | str) -> Entry: ...

    def load_prompt(self, entry: Entry | str) -> np.ndarray: ...

    def load_embedding(self, entry: Entry | str) -> np.ndarray: ...

    def add_many(self, items: Iterable[Mapping[str, Any]], *, batch: int = 1000) -> list[Entry]: ...


def read_prompt_file(path: Path) -> np.ndarray:
    """A prompt from any layout `spot.load_prompt` reads (.npy, safetensors, PEFT, t5x)."""
    from spot.model.prompt_files import load_prompt

    return np.asarray(load_prompt(path))


def prompt_files(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    """Files (and single-prompt folders) named by `paths`; plain folders are expanded to
    their .npy and .safetensors files, not recursively."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir() and any((p / marker).exists() for marker in PROMPT_FOLDER_MARKERS):
            files.append(p)
        elif p.is_dir():
            found = sorted(q for q in p.iterdir() if q.is_file() and q.suffix in (".npy", ".safetensors"))
            if not found:
                raise PromptError(f"{p} holds no .npy or .safetensors prompt files")
            files += found
        elif p.exists():
            files.append(p)
        else:
            raise PromptError(f"{p} does not exist")
    return files


def release_model(path: Path) -> str:
    """The model a released prompt belongs to: `<model>` of a `prompts_<model>` parent folder."""
    parent = path.resolve().parent.name
    if parent.startswith(_RELEASE_PREFIX) and len(parent) > len(_RELEASE_PREFIX):
        return parent[len(_RELEASE_PREFIX):]
    return "unspecified"


def import_prompts(lib: LibraryFiles, paths: str | os.PathLike | Iterable[str | os.PathLike],
                   task: str | None = None, model: str | None = None, **add_kwargs: Any) -> list[Entry]:
    """Add prompt files (.npy, safetensors, ...; folders are expanded, not recursively).

    The task is the file stem unless `task` is given. Without `model`, a parent folder
    named `prompts_<model>` (as in the prompt-tuning release) names the model.
    """
    items = []
    for f in prompt_files(paths):
        default_task = f.name if f.is_dir() else f.stem
        items.append(dict(add_kwargs, task=task or default_task, prompt=read_prompt_file(f),
                          model=model if model is not None else release_model(f), source_file=f.name))
    return lib.add_many(items)


def export(lib: LibraryFiles, entry: Entry | str, out: str | os.PathLike, which: str = "prompt") -> Path:
    """Write the entry's prompt (or key embedding) with `spot.save_prompt`: float32 `.npy` or
    `.safetensors`, plus a `<out>.json` sidecar recording where it came from."""
    from spot.model.prompt_files import save_prompt

    if which not in ("prompt", "embedding"):
        raise ConfigError(f"which must be 'prompt' or 'embedding', got {which!r}")
    out_real = Path(os.path.realpath(out))
    root_real = lib.root.resolve()
    if out_real == root_real or root_real in out_real.parents:
        raise LibraryError(f"{out} is inside the library {lib.root}; export outside it")
    e = lib.get(entry)
    arr = lib.load_prompt(e) if which == "prompt" else lib.load_embedding(e)
    return save_prompt(out, arr, metadata={"library": str(lib.root), "which": which, **e.to_dict()})
