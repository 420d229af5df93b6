"""Atomic writes give the permissions a plain open() would: 0666 & ~umask for a new file,
the existing file's mode when one is replaced; folders assembled in a temporary sibling
get 0777 & ~umask (or the replaced folder's mode)."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from spot.fileio import atomic_open, atomic_write_bytes, atomic_write_text


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask():
    """Set the process umask for one test and restore it afterwards."""
    old = os.umask(0o022)
    os.umask(old)
    yield lambda value: os.umask(value)
    os.umask(old)


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077, 0o027])
def test_new_file_gets_open_mode(tmp_path, umask, mask):
    umask(mask)
    atomic_write_text(tmp_path / "a.json", "{}")
    atomic_write_bytes(tmp_path / "b.bin", b"x")
    with atomic_open(tmp_path / "c.txt", "w") as f:
        f.write("c")
    plain = tmp_path / "plain"
    plain.write_text("p")
    for name in ("a.json", "b.bin", "c.txt"):
        assert _mode(tmp_path / name) == 0o666 & ~mask == _mode(plain), name


def test_replacing_keeps_the_existing_mode(tmp_path, umask):
    umask(0o022)
    path = tmp_path / "shared.json"
    path.write_text("old")
    os.chmod(path, 0o664)
    atomic_write_text(path, "new")
    assert path.read_text() == "new" and _mode(path) == 0o664
    os.chmod(path, 0o600)
    atomic_write_bytes(path, b"newer")
    assert path.read_bytes() == b"newer" and _mode(path) == 0o600


def test_writes_through_a_symlink_like_open(tmp_path, umask):
    umask(0o022)
    target = tmp_path / "real.json"
    target.write_text("old")
    os.chmod(target, 0o640)
    link = tmp_path / "link.json"
    link.symlink_to(target)
    atomic_write_text(link, "new")
    assert link.is_symlink() and target.read_text() == "new" and _mode(target) == 0o640


def test_failed_write_leaves_no_temporary_and_keeps_the_old_file(tmp_path):
    path = tmp_path / "x.json"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_open(path, "w") as f:
            f.write("half")
            raise RuntimeError("crash")
    assert path.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["x.json"]


def test_prompt_files_and_sidecars_are_group_readable(tmp_path, umask):
    from spot.model.prompt_files import save_prompt

    umask(0o022)
    path = save_prompt(tmp_path / "p.npy", np.ones((2, 4), np.float32), metadata={"task": "t"})
    assert _mode(path) == 0o644 and _mode(str(path) + ".json") == 0o644


def test_library_files_match_its_index(tmp_path, umask):
    from spot.library.store import PromptLibrary

    umask(0o022)
    root = tmp_path / "lib"
    with PromptLibrary(root, create=True) as lib:
        lib.add(task="t", prompt=np.ones((2, 4), np.float32),
                embedding=np.full((2, 4), 2.0, np.float32))
    files = [p for p in root.rglob("*") if p.is_file()]
    assert any(p.name.endswith(".npy") for p in files) and any(p.suffix == ".json" for p in files)
    for p in files:
        assert _mode(p) & 0o044 == 0o044, (p, oct(_mode(p)))
    for p in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        assert _mode(p) == 0o755, (p, oct(_mode(p)))


def test_native_checkpoint_folder_and_files(tmp_path, umask):
    from spot.model.checkpoints import save_native
    from tests.model.test_checkpoints import SMALL, random_params

    umask(0o002)
    path = save_native(tmp_path / "ckpt", SMALL, random_params(SMALL))
    assert _mode(path) == 0o775
    assert _mode(path / "config.json") == 0o664 and _mode(path / "params.safetensors") == 0o664
    os.chmod(path, 0o750)  # a replaced checkpoint keeps its folder's mode
    save_native(path, SMALL, random_params(SMALL, seed=1))
    assert _mode(path) == 0o750


def test_peft_adapter_folder(tmp_path, umask):
    from spot.model.prompt_files import export_peft
    from tests.model.test_checkpoints import SMALL

    umask(0o022)
    out = export_peft(np.ones((3, SMALL.emb_dim), np.float32), tmp_path / "adapter",
                      base_model="t5", config=SMALL)
    assert _mode(out) == 0o755
    assert all(_mode(p) == 0o644 for p in out.iterdir())
