"""Crash-safe file writing and root-confined paths.

Everything a crash could tear is written to a temporary file in the destination folder and
renamed over the target (rename is atomic on POSIX within one file system).

Permissions follow a plain `open(path, "w")`: a new file gets 0666 & ~umask, a replaced file
keeps its mode, and a symlink at `path` is written through (its target is replaced, the link
stays). Folders assembled in a temporary sibling (`temp_dir_for` + `replace_dir`) get
0777 & ~umask, or the mode of the folder they replace.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
import threading
from pathlib import Path
from typing import IO, Collection, Iterator

from spot.errors import SpotError

_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux /proc)."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    with _UMASK_LOCK:  # elsewhere: set and restore (a brief, process-wide change)
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def _existing_mode(path: Path) -> int | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return stat.S_IMODE(st.st_mode)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary sibling of `path` for writing; rename it over `path` on success.

    The result has the mode a plain `open()` would give it (see the module docstring).
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open supports 'w' and 'wb', not {mode!r}")
    path = Path(os.path.realpath(path))  # through symlinks, as open() writes
    path.parent.mkdir(parents=True, exist_ok=True)
    existing = _existing_mode(path) if path.is_file() else None
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, existing if existing is not None else 0o666 & ~current_umask())
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def temp_dir_for(path: str | os.PathLike) -> Path:
    """An empty temporary sibling folder of `path` to assemble it in, with the mode `path`
    has (when it is a folder) or a plain `mkdir` would give (0777 & ~umask)."""
    path = Path(os.path.realpath(path))  # a symlinked folder is replaced where it points
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    existing = _existing_mode(path) if path.is_dir() else None
    os.chmod(tmp, existing if existing is not None else 0o777 & ~current_umask())
    return tmp


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst, follow_symlinks=False)
    except OSError:
        shutil.copy2(src, dst, follow_symlinks=False)


def _carry_over(old: Path, new: Path, owned: Collection[str]) -> None:
    """Hard-link (else copy) every entry of `old` that the writer does not own into `new`."""
    for child in old.iterdir():
        if child.name in owned or (new / child.name).exists():
            continue
        if child.is_symlink():
            os.symlink(os.readlink(child), new / child.name)
        elif child.is_dir():
            shutil.copytree(child, new / child.name, symlinks=True, copy_function=_link_or_copy)
        else:
            _link_or_copy(str(child), str(new / child.name))


def _exchange(a: Path, b: Path) -> bool:
    """Swap two folders in one step (Linux renameat2 RENAME_EXCHANGE): no moment without
    either. False where the system or file system cannot, so the caller moves aside instead."""
    import ctypes
    import errno

    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EPERM):
        return False
    raise OSError(err, os.strerror(err), str(a), None, str(b))


def replace_dir(src: Path, dst: Path, *, owned: Collection[str] | None = None) -> None:
    """Rename the assembled folder `src` over `dst` (swapped in one step where the system
    allows, else any old `dst` moves aside first).

    With `owned`, the old folder's other entries (a `vocab.model`, a README) are carried
    into the new one first, so replacing a writer's files never deletes anyone else's; a
    crash at any point leaves either the old folder or the complete new one.
    """
    src, dst = Path(src), Path(os.path.realpath(dst))
    if owned is not None and dst.is_dir():
        _carry_over(dst, src, set(owned))
    if dst.is_dir() and _exchange(src, dst):
        shutil.rmtree(src, ignore_errors=True)  # src now holds the old folder
    else:
        old = None
        if dst.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=".old", dir=dst.parent))
            os.rmdir(old)
            os.replace(dst, old)
        try:
            os.replace(src, dst)
        except BaseException:
            if old is not None:
                os.replace(old, dst)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    with contextlib.suppress(OSError):
        fd = os.open(dst.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def finish_files(folder: Path, names: Collection[str]) -> None:
    """Give files written into a temporary folder a plain open()'s mode (some writers, such
    as safetensors' `save_file`, create them owner-only) and flush them to disk."""
    mode = 0o666 & ~current_umask()
    for name in names:
        with open(folder / name, "rb") as f:
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path, "wb") as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w") as f:
        f.write(text)


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether `a` and `b` name one file: the same inode (hard links included) when both
    exist, else the same path once symlinks and `..` are resolved."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


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
