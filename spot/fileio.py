"""Crash-safe file writing and root-confined paths.

Everything a crash could tear is written to a temporary file in the destination folder and
renamed over the target (rename is atomic on POSIX within one file system).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator

from spot.errors import SpotError


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary sibling of `path` for writing; rename it over `path` on success."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open supports 'w' and 'wb', not {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path, "wb") as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w") as f:
        f.write(text)


def confined_path(root: str | os.PathLike, *parts: str) -> Path:
    """Join `parts` under `root`, refusing any result that escapes `root`.

    Rejects absolute parts, `..` segments and symlinks that lead outside the root.
    """
    root_resolved = Path(root).resolve()
    for part in parts:
        if not part or Path(part).is_absolute() or "\x00" in part:
            raise SpotError(f"invalid path component {part!r} under {root}")
    candidate = root_resolved.joinpath(*parts).resolve()
    if candidate != root_resolved and root_resolved not in candidate.parents:
        raise SpotError(f"path {'/'.join(parts)!r} escapes the folder {root}")
    return candidate
