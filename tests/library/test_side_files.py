"""Read-only uses of a library close their SQLite connection: no `-wal`/`-shm` files stay.

SQLite checkpoints the write-ahead log and deletes both side files when the last connection
to the index closes; while another connection is open they must stay (writers rely on them),
so only a command that leaves its connection open would leave them behind.
"""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from spot.cli import cli
from spot.library.store import PromptLibrary


def _side_files(root):
    return sorted(p.name for p in root.iterdir() if p.name.endswith(("-wal", "-shm")))


@pytest.fixture
def library(tmp_path):
    root = tmp_path / "lib"
    with PromptLibrary(root) as lib:
        lib.add(task="a", prompt=np.arange(8, dtype=np.float32).reshape(2, 4) + 1)
        lib.add(task="b", prompt=np.arange(8, dtype=np.float32).reshape(2, 4) - 9)
    query = tmp_path / "q.npy"
    np.save(query, np.ones((2, 4), np.float32))
    assert _side_files(root) == []
    return root, query


def _invoke(args):
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def test_retrieve_leaves_no_side_files(library, tmp_path):
    root, query = library
    out = tmp_path / "init.npy"
    _invoke(["retrieve", "--target", "c", "--k", "1", "--embedding", str(query),
             "--library", str(root), "--write-init", str(out)])
    assert out.exists()
    assert _side_files(root) == []


def test_affinity_rank_closes_the_library(library, tmp_path, monkeypatch):
    from spot.retrieval import affinity

    class _Scorer:
        def score_pool(self, queries, pool):
            return {task: 0.0 for task in pool}

    monkeypatch.setattr(affinity.AffinityScorer, "load", classmethod(lambda cls, path: _Scorer()))
    root, query = library
    (tmp_path / "scorer").mkdir()
    _invoke(["affinity", "rank", "--scorer", str(tmp_path / "scorer"), "--embedding", str(query),
             "--library", str(root)])
    assert _side_files(root) == []


def test_library_rank_leaves_no_side_files(library):
    root, query = library
    _invoke(["library", "rank", str(query), "--library", str(root)])
    assert _side_files(root) == []


def test_rank_then_close_leaves_no_side_files(library):
    root, _ = library
    with PromptLibrary(root, create=False) as lib:
        assert len(lib.rank(np.ones((2, 4)), k=2)) == 2
    assert _side_files(root) == []


def test_side_files_stay_while_another_connection_is_open(library):
    root, _ = library
    with PromptLibrary(root, create=False) as writer:
        with PromptLibrary(root, create=False) as reader:
            reader.rank(np.ones((2, 4)))
        assert _side_files(root) != []  # the writer's connection still needs them
        writer.add(task="c", prompt=np.ones((2, 4)))
    assert _side_files(root) == []
