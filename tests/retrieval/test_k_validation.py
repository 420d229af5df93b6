"""Every entry point that takes `k` (how many sources) validates it with one validator:
`k` is a positive integer; `--k -1` no longer silently drops the last source and `--k 0` no
longer prints an empty table."""

from __future__ import annotations

import numpy as np
import pytest

from spot.cli import main
from spot.errors import ConfigError
from spot.library.store import PromptLibrary
from spot.retrieval.similarity import check_k
from spot.retrieval.strategies import ranked_sources


@pytest.fixture
def library(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "lib"
    with PromptLibrary(root, create=True) as lib:
        for task in ("a", "b", "c"):
            lib.add(task=task, prompt=rng.normal(size=(2, 4)).astype(np.float32))
    query = tmp_path / "q.npy"
    np.save(query, rng.normal(size=(2, 4)).astype(np.float32))
    return root, query


@pytest.mark.parametrize("k", [0, -1, 1.5, True, "2"])
def test_check_k_refuses(k):
    with pytest.raises(ConfigError, match=f"k must be a positive integer, got {k!r}"):
        check_k(k)


def test_check_k_accepts():
    assert check_k(3) == 3 and check_k(np.int64(2)) == 2 and check_k(None, allow_none=True) is None
    with pytest.raises(ConfigError):
        check_k(None)


@pytest.mark.parametrize("k", [0, -1])
def test_ranked_sources_refuses(library, k):
    root, query = library
    with PromptLibrary(root) as lib:
        emb = np.load(query)
        assert len(ranked_sources(lib, emb, metric="avg_cosine", k=3)) == 3
        with pytest.raises(ConfigError, match="k must be a positive integer"):
            ranked_sources(lib, emb, metric="avg_cosine", k=k)
        with pytest.raises(ConfigError, match="k must be a positive integer"):
            lib.rank(emb, metric="avg_cosine", k=k)


def _exit(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    return exit_info.value.code, capsys.readouterr()


@pytest.mark.parametrize("k", ["0", "-1"])
def test_cli_entry_points_refuse(library, tmp_path, capsys, k):
    root, query = library
    commands = [
        ["retrieve", "--target", "c", "--embedding", str(query), "--library", str(root)],
        ["transfer", "--target", "c", "--embedding", str(query), "--library", str(root),
         "--dry-run"],
        ["library", "rank", str(query), "--root", str(root)],
    ]
    scorer = tmp_path / "scorer"
    scorer.mkdir()  # refused for k before the scorer is read
    commands.append(["affinity", "rank", "--scorer", str(scorer), "--embedding", str(query),
                     "--library", str(root)])
    for args in commands:
        code, captured = _exit([*args, "--k", k], capsys)
        assert code == 2, (args, captured)
        assert captured.err.strip() == f"error: k must be a positive integer, got {int(k)}", args
        assert captured.out == ""
