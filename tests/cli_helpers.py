"""Helpers for the CLI sweep: run `spot` the way its console entry does, snapshot folders,
make a folder read-only even for root, and kill a `spot` process in the middle of a write.

`run_spot` calls `spot.cli.main` (not the bare click group), so a `SpotError` becomes the one
`error: ...` line and exit status 2 a user sees; any other exception escapes as it would
print a traceback. `python -m tests.cli_helpers crash N FOLDER -- ARGS...` runs `spot ARGS`
and kills the process (os._exit, no cleanup) at its N-th write point under FOLDER.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

ROOT = Path(__file__).resolve().parents[1]
KILLED = 137  # the crash driver's exit status when it killed the process


@dataclass
class Outcome:
    code: int | None  # None: an exception escaped main() (a traceback for a user)
    stdout: str
    stderr: str
    exception: BaseException | None = None

    def error_lines(self) -> list[str]:
        """The lines that state a problem: spot's `error: ...` or click's `Error: ...`."""
        return [line for line in self.stderr.splitlines()
                if line.startswith(("error:", "Error:"))]


def run_spot(args: Sequence[object], env: dict[str, str] | None = None) -> Outcome:
    """`spot ARGS` in this process, through the console entry point `spot.cli.main`."""
    from click.testing import CliRunner

    from spot.cli import main

    runner = CliRunner()
    with runner.isolation(env=env) as (out, err, _):
        code: int | None = 0
        exception = None
        try:
            main([str(a) for a in args])
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except BaseException as e:  # noqa: BLE001 - the point is to see it
            code, exception = None, e
        sys.stdout.flush()
        sys.stderr.flush()
        return Outcome(code, out.getvalue().decode("utf-8", "replace"),
                       err.getvalue().decode("utf-8", "replace"), exception)


def spot_subprocess(args: Sequence[object], *, timeout: float = 120,
                    env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The real console entry (`python -c 'from spot.cli import main; main()'`) in a child."""
    return subprocess.run([sys.executable, "-c", "from spot.cli import main; main()",
                           *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT, env={**os.environ, **(env or {})})


def snapshot(*roots: Path) -> dict[str, tuple[str, int]]:
    """path -> (sha256 of the content or '<dir>', mode) for everything under `roots`."""
    out: dict[str, tuple[str, int]] = {}
    for root in roots:
        for path in [root, *sorted(root.rglob("*"))] if root.exists() else []:
            st = path.lstat()
            if stat.S_ISDIR(st.st_mode):
                digest = "<dir>"
            elif stat.S_ISLNK(st.st_mode):
                digest = "-> " + os.readlink(path)
            else:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
            out[str(path)] = (digest, stat.S_IMODE(st.st_mode))
    return out


def changes(before: dict[str, tuple[str, int]], after: dict[str, tuple[str, int]]) -> list[str]:
    """Human-readable differences between two snapshots (empty when nothing changed)."""
    diff = [f"removed {p}" for p in before if p not in after]
    # sqlite's side files come and go with an open connection; they hold no user data.
    diff += [f"created {p}" for p in after if p not in before
             and not p.endswith(("-wal", "-shm", "-journal"))]
    diff += [f"changed {p}" for p in before if p in after and before[p] != after[p]]
    return diff


def _try_write(folder: Path) -> bool:
    probe = folder / ".write-probe"
    try:
        probe.write_bytes(b"")
    except OSError:
        return False
    probe.unlink()
    return True


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[bool]:
    """Make `folder` unwritable for the duration; yields whether that worked. chmod 0555
    does not stop root, so as root the folder is made immutable (`chattr +i`) instead."""
    folder.mkdir(parents=True, exist_ok=True)
    mode = stat.S_IMODE(folder.stat().st_mode)
    folder.chmod(0o555)
    immutable = False
    try:
        if _try_write(folder) and shutil.which("chattr"):
            immutable = subprocess.run(["chattr", "+i", str(folder)],
                                       capture_output=True).returncode == 0
        yield not _try_write(folder)
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        folder.chmod(mode)


# ---------------------------------------------------------------------------------------
# Crash injection (runs inside the child process)


def _install_crash(n: int, folder: str) -> None:
    """Count write points under `folder` (a file opened for writing, then its first write; a
    rename, fsync or unlink) and kill the process at the n-th: half of that write reaches the
    file."""
    import builtins

    folder = os.path.realpath(folder)
    count = [0]
    real_open, real_fdopen = builtins.open, os.fdopen
    real_replace, real_rename, real_fsync = os.replace, os.rename, os.fsync

    def under(path) -> bool:
        try:
            p = os.path.realpath(os.fspath(path))
        except TypeError:
            return False
        return p == folder or p.startswith(folder + os.sep)

    def point() -> bool:
        count[0] += 1
        return count[0] == n

    def die() -> None:
        os._exit(KILLED)

    class Torn:
        """A file whose first write is cut in half by the crash."""

        def __init__(self, f):
            self._f = f
            self._first = True

        def write(self, data):
            first, self._first = self._first, False
            if first and point():
                data = data[: max(1, len(data) // 2)] if len(data) else data
                self._f.write(data)
                self._f.flush()
                die()
            return self._f.write(data)

        def __getattr__(self, name):
            return getattr(self._f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._f.close()

        def __iter__(self):
            return iter(self._f)

    def writing(mode: str) -> bool:
        return any(c in mode for c in "wax+")

    def open_(file, mode="r", *a, **kw):
        f = real_open(file, mode, *a, **kw)
        return Torn(f) if writing(mode) and not isinstance(file, int) and under(file) else f

    def fdopen_(fd, mode="r", *a, **kw):
        f = real_fdopen(fd, mode, *a, **kw)
        return Torn(f) if writing(mode) and under(os.readlink(f"/proc/self/fd/{fd}")) else f

    def replace_(src, dst, *a, **kw):
        if (under(src) or under(dst)) and point():
            die()
        return real_replace(src, dst, *a, **kw)

    def rename_(src, dst, *a, **kw):
        if (under(src) or under(dst)) and point():
            die()
        return real_rename(src, dst, *a, **kw)

    real_unlink = os.unlink

    def unlink_(path, *a, **kw):
        if not kw.get("dir_fd") and under(path) and point():
            die()
        return real_unlink(path, *a, **kw)

    def fsync_(fd):
        with contextlib.suppress(OSError):
            if under(os.readlink(f"/proc/self/fd/{fd}")) and point():
                die()
        return real_fsync(fd)

    builtins.open = io.open = open_
    os.fdopen, os.replace, os.rename, os.fsync = fdopen_, replace_, rename_, fsync_
    os.unlink = os.remove = unlink_


def crash_run(n: int, folder: Path, args: Sequence[object], *,
              timeout: float = 180) -> subprocess.CompletedProcess:
    """`spot ARGS` (or `-c CODE`) in a child that is killed at its n-th write point under
    `folder`; its exit status is KILLED when the crash happened, else the command's own."""
    return subprocess.run([sys.executable, "-m", "tests.cli_helpers", "crash", str(n),
                           str(folder), "--", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


if __name__ == "__main__":
    if len(sys.argv) > 4 and sys.argv[1] == "crash" and sys.argv[4] == "--":
        _install_crash(int(sys.argv[2]), sys.argv[3])
        if sys.argv[5] == "-c":  # a Python snippet instead of a spot command
            exec(sys.argv[6], {"__name__": "__crash__"})
        else:
            from spot.cli import main

            main(sys.argv[5:])
    else:
        sys.exit("usage: python -m tests.cli_helpers crash N FOLDER -- SPOT_ARGS...")


def invoke_ok(args: Sequence[object]):
    """Run `spot ARGS` in-process (click's runner); re-raise a crash, require exit 0."""
    from click.testing import CliRunner

    from spot.cli import cli

    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=True)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result

