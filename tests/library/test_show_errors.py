"""Entry lookup says when an id prefix is ambiguous (and lists the candidates) or too short;
`spot library show` on an entry with a corrupt array still shows its metadata and names the
corrupt file."""

from __future__ import annotations

import json

import numpy as np
import pytest

from spot.cli import main
from spot.errors import LibraryError
from spot.library import store
from spot.library.store import PromptLibrary

IDS = ["c9aa000000000001", "c9ab000000000002", "c9aa000000000003", "d000000000000004"]


@pytest.fixture
def lib(tmp_path, monkeypatch):
    ids = iter(IDS)
    monkeypatch.setattr(store.secrets, "token_hex", lambda n: next(ids))
    root = tmp_path / "lib"
    with PromptLibrary(root, create=True) as library:
        for i, task in enumerate(["rte", "boolq", "cb", "copa"]):
            library.add(task=task, prompt=np.full((2, 4), i + 1.0, np.float32),
                        embedding=np.full((2, 4), -1.0 - i, np.float32), metrics={"score": 50.0})
        yield library


def test_ambiguous_prefix_lists_the_candidates(lib):
    with pytest.raises(LibraryError) as info:
        lib.get("c9")
    message = str(info.value)
    assert "ambiguous" in message and "no entry" not in message, message
    for entry_id in IDS[:3]:
        assert entry_id in message
    assert IDS[3] not in message
    with pytest.raises(LibraryError, match="ambiguous") as info:
        lib.get("c9aa")
    assert IDS[0] in str(info.value) and IDS[2] in str(info.value) and IDS[1] not in str(info.value)
    assert lib.get("c9ab").id == IDS[1] and lib.get("C9AB0").id == IDS[1]


def test_short_unique_prefix_and_unknown_ids(lib):
    with pytest.raises(LibraryError, match="at least 4 characters") as info:
        lib.get("d0")
    assert IDS[3] in str(info.value)
    with pytest.raises(LibraryError, match="no entry 'e1'"):
        lib.get("e1")
    with pytest.raises(LibraryError, match="ids are 16 hex"):
        lib.get("zz")


def test_show_ambiguous_prefix_cli(lib, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["library", "show", "c9", "--root", str(lib.root)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith("error: ambiguous") and IDS[1] in err


@pytest.mark.parametrize("which", ["prompt", "key"])
def test_show_corrupt_array_keeps_metadata(lib, capsys, which):
    path = lib.root / "arrays" / IDS[1][:2] / f"{IDS[1]}.{which}.npy"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(SystemExit) as exit_info:
        main(["library", "show", IDS[1], "--root", str(lib.root)])
    captured = capsys.readouterr()
    assert exit_info.value.code == 2
    shown = json.loads(captured.out)
    assert shown["id"] == IDS[1] and shown["task"] == "boolq" and shown["metrics"] == {"score": 50.0}
    assert len(shown["problems"]) == 1 and str(path) in shown["problems"][0]
    assert "checksum" in shown["problems"][0]
    if which == "prompt":
        assert shown["prompt_stats"] is None
    else:
        assert shown["prompt_stats"]["max"] == 2.0
    assert captured.err.startswith("error:") and str(path) in captured.err
    assert "Traceback" not in captured.err


def test_show_missing_array_names_the_file(lib, capsys):
    path = lib.root / "arrays" / IDS[3][:2] / f"{IDS[3]}.prompt.npy"
    path.unlink()
    with pytest.raises(SystemExit):
        main(["library", "show", IDS[3], "--root", str(lib.root)])
    captured = capsys.readouterr()
    assert json.loads(captured.out)["task"] == "copa" and str(path) in captured.err
