"""`spot library ...` through click's CliRunner."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from spot.cli import cli
from spot.errors import ConfigError, LibraryError, PromptError
from spot.library.store import PromptLibrary


@pytest.fixture
def run(tmp_path):
    runner = CliRunner()

    def invoke(*args, ok=True):
        result = runner.invoke(cli, list(args), env={"SPOT_LIBRARY": str(tmp_path / "lib")})
        if ok:
            assert result.exit_code == 0, (result.output, result.exception)
        return result

    return invoke


def test_add_list_show_export_remove(run, tmp_path):
    prompt = np.arange(12, dtype=np.float32).reshape(3, 4) + 1
    emb = np.arange(8, dtype=np.float32).reshape(2, 4) - 3.5
    np.save(tmp_path / "p.npy", prompt)
    np.save(tmp_path / "e.npy", emb)
    out = run("library", "add", "--task", "boolq", "--prompt", str(tmp_path / "p.npy"), "--embedding",
              str(tmp_path / "e.npy"), "--model", "t5_base", "--step", "10000", "--metric", "accuracy=81.5",
              "--meta", "seed=2", "--meta", "source=glue")
    entry_id = out.output.strip()
    assert len(entry_id) == 16

    listing = run("library", "list").output.splitlines()
    assert listing[0].split() == ["id", "task", "run", "model", "step", "kind", "shape", "metrics"]
    assert listing[1].split() == [entry_id, "boolq", "0", "t5_base", "10000", "embedding", "3x4", "accuracy=81.5"]
    rows = [json.loads(line) for line in run("library", "list", "--json").output.splitlines()]
    assert rows[0]["metadata"] == {"seed": 2, "source": "glue"} and rows[0]["key_shape"] == [2, 4]
    assert run("library", "list", "--task", "other").output.strip() == "(no entries)"

    shown = json.loads(run("library", "show", entry_id[:8]).output)
    assert shown["id"] == entry_id and shown["prompt_stats"]["max"] == 12.0

    run("library", "export", entry_id, "--out", str(tmp_path / "back.npy"), "--which", "embedding")
    np.testing.assert_array_equal(np.load(tmp_path / "back.npy", allow_pickle=False), emb)

    ranked = run("library", "rank", str(tmp_path / "e.npy"), "--metric", "avg_cosine").output.split()
    assert ranked[:2] == ["1.000000", entry_id]

    assert "removed" in run("library", "remove", entry_id).output
    with PromptLibrary(tmp_path / "lib") as lib:
        assert len(lib) == 0


def test_import_release(run, tmp_path, released_prompts_dir):
    out = run("library", "import", str(released_prompts_dir)).output.splitlines()
    assert [line.split()[1] for line in out] == ["mrpc", "rte", "sst2"]
    ranked = run("library", "rank", str(released_prompts_dir / "sst2.npy"), "--by", "task", "--k", "2",
                 "--metric", "avg_cosine").output.splitlines()
    assert ranked[0].split() == ["1.000000", "sst2"] and len(ranked) == 2


def test_errors_are_spot_errors(run, tmp_path):
    np.save(tmp_path / "p.npy", np.ones((2, 4), np.float32))
    result = run("library", "add", "--task", "t", "--prompt", str(tmp_path / "p.npy"), "--metric", "acc", ok=False)
    assert isinstance(result.exception, ConfigError)
    result = run("library", "list", ok=False)  # nothing was created
    assert isinstance(result.exception, LibraryError) and "no library.json" in str(result.exception)
    run("library", "add", "--task", "t", "--prompt", str(tmp_path / "p.npy"))
    result = run("library", "show", "0123456789abcdef", ok=False)
    assert isinstance(result.exception, LibraryError)
    np.save(tmp_path / "q.npy", np.ones((2, 5), np.float32))
    result = run("library", "rank", str(tmp_path / "q.npy"), ok=False)
    assert isinstance(result.exception, PromptError) and "width 5" in str(result.exception)
    result = run("library", "rank", str(tmp_path / "p.npy"), "--k", "3", ok=False)
    assert isinstance(result.exception, ConfigError) and "k=3" in str(result.exception)
    result = run("library", "rank", str(tmp_path / "p.npy"), "--metric", "cos", ok=False)
    assert isinstance(result.exception, ConfigError)


def test_main_prints_errors_without_traceback(tmp_path, capsys, monkeypatch):
    from spot.cli import main

    monkeypatch.setenv("SPOT_LIBRARY", str(tmp_path / "missing"))
    with pytest.raises(SystemExit) as exit_info:
        main(["library", "list"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err


def test_library_flag_and_its_old_spelling(tmp_path):
    """`--library` everywhere; `--root` still works on `spot library` but is not advertised."""
    runner = CliRunner()
    np.save(tmp_path / "p.npy", np.ones((2, 4), np.float32))
    env = {"SPOT_LIBRARY": str(tmp_path / "from_env")}
    for flag, name in (("--library", "new"), ("--root", "old")):
        result = runner.invoke(cli, ["library", "add", "--task", name, "--prompt", str(tmp_path / "p.npy"),
                                     flag, str(tmp_path / name)], env=env)
        assert result.exit_code == 0, result.output
        listed = runner.invoke(cli, ["library", "list", "--json", flag, str(tmp_path / name)], env=env)
        assert [json.loads(line)["task"] for line in listed.output.splitlines()] == [name]
    assert not (tmp_path / "from_env").exists()  # an explicit flag beats $SPOT_LIBRARY
    both = runner.invoke(cli, ["library", "list", "--library", str(tmp_path / "new"),
                               "--root", str(tmp_path / "old")])
    assert both.exit_code == 2 and "only one of them" in both.output
    same = runner.invoke(cli, ["library", "list", "--library", str(tmp_path / "new"),
                               "--root", str(tmp_path / "new")])
    assert same.exit_code == 0, same.output

    group_help = runner.invoke(cli, ["library", "--help"]).output
    assert "--library" in group_help and "--root" not in group_help
    for command in (["library", "list"], ["library", "add"], ["library", "rank"], ["retrieve"],
                    ["affinity", "rank"], ["bench", "retrieval"]):
        text = runner.invoke(cli, [*command, "--help"]).output
        assert "--library" in text and "--root" not in text, command


def test_bench_retrieval_takes_the_library_flag(tmp_path):
    runner = CliRunner()
    for flag in ("--library", "--root"):
        root = tmp_path / flag.strip("-")
        result = runner.invoke(cli, ["bench", "retrieval", flag, str(root), "--entries", "20", "--emb-dim", "8",
                                     "--prompt-length", "3", "--queries", "1", "--k", "2", "--json"])
        assert result.exit_code == 0, (result.output, result.exception)
        with PromptLibrary(root, create=False) as lib:
            assert len(lib) == 20
