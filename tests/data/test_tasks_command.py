"""`spot tasks` and `spot tasks show`."""

from __future__ import annotations

import json

from click.testing import CliRunner

from spot.cli import cli


def test_list_shows_family_size_metric_and_availability(tmp_path, monkeypatch):
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
    result = CliRunner().invoke(cli, ["tasks"])
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line.split() for line in result.output.splitlines() if line.strip()}
    assert lines["cola"][1:] == ["task", "glue", "tfds", "8,551", "mcc", "no"]
    assert lines["glue"][:2] == ["glue", "mixture"] and lines["glue"][-1] == "0/8"
    # Preparing a dataset flips its availability; filters and JSON output.
    d = tmp_path / "glue" / "cola" / "2.0.0"
    d.mkdir(parents=True)
    (d / "dataset_info.json").write_text('{"splits": [{"name": "train", "shardLengths": [10]}]}')
    result = CliRunner().invoke(cli, ["tasks", "--family", "glue", "--available", "--json"])
    rows = json.loads(result.output)
    assert [(r["name"], r["train"], r["available"]) for r in rows] == [("cola", 10, True)]


def test_show_prints_examples_with_token_counts(tmp_path, vocab_path):
    path = tmp_path / "u_show.jsonl"
    path.write_text("".join(json.dumps({"inputs": f"u_show sentence: good movie {i}",
                                        "targets": "positive", "split": "validation"}) + "\n"
                            for i in range(5)) + json.dumps(
        {"inputs": "x", "targets": "negative", "split": "train"}) + "\n")
    result = CliRunner().invoke(cli, ["tasks", "show", "u_show", "--task-file", str(path),
                                      "--vocab", str(vocab_path), "-n", "2",
                                      "--input-length", "5"])
    assert result.exit_code == 0, result.output
    assert result.output.count("-- example") == 2
    assert "inputs:  u_show sentence: good movie 0" in result.output
    assert "targets: positive" in result.output
    assert "inputs truncated to 5" in result.output
    from spot.data.vocab import load_vocabulary

    n = len(load_vocabulary(vocab_path).encode("u_show sentence: good movie 0")) + 1
    assert f"(inputs {n} tokens, targets" in result.output


def test_show_unknown_task_is_a_clear_error(capsys):
    import pytest

    from spot.cli import main

    with pytest.raises(SystemExit) as e:
        main(["tasks", "show", "superglu"])
    assert e.value.code == 2
    assert "unknown task or mixture 'superglu'; did you mean superglue" in capsys.readouterr().err
