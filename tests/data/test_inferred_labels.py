"""A task file that declares no label words: a small closed set of training targets becomes
its label set (rank classification, class-label init); otherwise it is scored by generation,
and both outcomes are stated with the reason (docs/tasks.md, "Label words")."""

from __future__ import annotations

import json

from click.testing import CliRunner

from spot.cli import cli
from spot.data import registry
from spot.data.local import register_task_file


def _write(path, train_targets, validation_targets):
    lines = [{"inputs": f"text {i}", "targets": t, "split": "train"}
             for i, t in enumerate(train_targets)]
    lines += [{"inputs": f"held {i}", "targets": t, "split": "validation"}
              for i, t in enumerate(validation_targets)]
    path.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    return path


def test_a_small_closed_set_of_targets_becomes_the_label_set(tmp_path):
    path = _write(tmp_path / "u_closed.jsonl", ["pos", "neg", "neutral"] * 3, ["neg", "pos"])
    info = registry.get(register_task_file(path))
    assert info.label_words == ("neg", "neutral", "pos")  # sorted: no file order dependence
    assert "inferred from the training targets" in info.labels_note
    from spot.train.evaluate import eval_method

    assert eval_method(info, "auto") == "rank"


def test_open_targets_are_scored_by_generation_and_say_why(tmp_path):
    many = _write(tmp_path / "u_open_many.jsonl", [f"answer {i}" for i in range(30)] * 2,
                  ["answer 1"])
    info = registry.get(register_task_file(many))
    assert info.label_words is None
    assert "generation" in info.labels_note and "30 distinct" in info.labels_note
    once = _write(tmp_path / "u_open_once.jsonl", ["a", "b", "c", "a"], ["a"])
    info = registry.get(register_task_file(once))
    assert info.label_words is None and "seen only once" in info.labels_note
    unseen = _write(tmp_path / "u_open_unseen.jsonl", ["yes", "no"] * 3, ["maybe"])
    info = registry.get(register_task_file(unseen))
    assert info.label_words is None and "'maybe'" in info.labels_note


def test_declared_label_words_are_kept_and_not_noted(tmp_path):
    data = _write(tmp_path / "decl.jsonl", ["pos", "neg"] * 3, ["neg"])
    spec = tmp_path / "u_declared.toml"
    spec.write_text('file = "decl.jsonl"\nlabel_words = ["pos", "neg"]\n', encoding="utf-8")
    info = registry.get(register_task_file(spec))
    assert info.label_words == ("pos", "neg") and "declared" in info.labels_note
    assert data.exists()


def test_tasks_show_and_info_state_how_the_task_is_scored(tmp_path, vocab_path):
    closed = _write(tmp_path / "u_show_closed.jsonl", ["yes", "no"] * 3, ["no"])
    opened = _write(tmp_path / "u_show_open.jsonl", ["x", "y", "z"], ["x"])
    r = CliRunner().invoke(cli, ["tasks", "info", "u_show_closed", "--task-file", str(closed)])
    assert r.exit_code == 0, r.output
    assert "labels: no | yes (inferred from the training targets" in r.output
    r = CliRunner().invoke(cli, ["tasks", "info", "u_show_open", "--task-file", str(opened),
                                 "--json"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.output)
    assert report["label_words"] is None and "generation" in report["labels_note"]
    r = CliRunner().invoke(cli, ["tasks", "show", "u_show_open", "--task-file", str(opened),
                                 "--vocab", str(vocab_path), "-n", "1"])
    assert r.exit_code == 0, r.output
    assert "scored by generation" in r.output
