"""`spot predict` never destroys its inputs and never truncates an output before the run has
produced it."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from spot.cli import main


@pytest.fixture
def files(tmp_path):
    lines = tmp_path / "in.jsonl"
    text = json.dumps({"inputs": "sentence valence: a fine film"}) + "\n"
    lines.write_text(text)
    prompt = tmp_path / "p.npy"
    np.save(prompt, np.zeros((4, 16), np.float32))
    return lines, text, prompt


def _run(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    err = capsys.readouterr().err
    return exit_info.value.code, err


def test_output_that_is_the_input_is_refused(tmp_path, tiny_model, files, capsys):
    lines, text, prompt = files
    link = tmp_path / "link.jsonl"
    link.symlink_to(lines)
    hard = tmp_path / "hard.jsonl"
    os.link(lines, hard)
    for out in (lines, link, hard, tmp_path / "." / "in.jsonl"):
        code, err = _run(["predict", "--prompt", str(prompt), "--input", str(lines),
                          "--output", str(out), "--task", "offline_review_polarity",
                          "--model", str(tiny_model)], capsys)
        assert code == 2 and err.startswith("error:") and "Traceback" not in err
        assert "--output" in err and "--input" in err, err
        assert lines.read_text() == text


def test_output_that_is_the_prompt_is_refused(tmp_path, tiny_model, files, capsys):
    lines, _, prompt = files
    before = prompt.read_bytes()
    code, err = _run(["predict", "--prompt", str(prompt), "--input", str(lines),
                      "--output", str(prompt), "--task", "offline_review_polarity",
                      "--model", str(tiny_model)], capsys)
    assert code == 2 and "--prompt" in err and prompt.read_bytes() == before


def test_failed_run_leaves_an_existing_output_alone(tmp_path, tiny_model, files, capsys):
    lines, _, prompt = files
    lines.write_text("not json\n")
    out = tmp_path / "out.jsonl"
    out.write_text("previous results\n")
    code, err = _run(["predict", "--prompt", str(prompt), "--input", str(lines),
                      "--output", str(out), "--task", "offline_review_polarity",
                      "--model", str(tiny_model), "--on-error", "stop"], capsys)
    assert code == 2 and "not valid UTF-8 JSON" in err
    assert out.read_text() == "previous results\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "out.jsonl", "p.npy"]


def test_empty_input_is_refused_before_the_model_loads(tmp_path, files, capsys):
    _, _, prompt = files
    for text in ("", "\n  \n"):
        empty = tmp_path / "empty.jsonl"
        empty.write_text(text)
        out = tmp_path / "out.jsonl"
        # the model path does not exist: the input is checked before anything loads
        code, err = _run(["predict", "--prompt", str(prompt), "--input", str(empty),
                          "--output", str(out), "--task", "offline_review_polarity",
                          "--model", str(tmp_path / "no-model")], capsys)
        assert code == 2 and "no lines to predict" in err and "Traceback" not in err, err
        assert not out.exists()


def test_a_run_whose_every_line_is_bad_fails(tmp_path, tiny_model, files, capsys):
    lines, _, prompt = files
    lines.write_text("not json\n{\"no_inputs\": 1}\n")
    out = tmp_path / "out.jsonl"
    code, err = _run(["predict", "--prompt", str(prompt), "--input", str(lines),
                      "--output", str(out), "--task", "offline_review_polarity",
                      "--model", str(tiny_model)], capsys)
    assert code == 1 and "0 predictions, 2 lines skipped" in err
    assert "no line could be predicted" in err
    records = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(records) == 2 and all("error" in r for r in records)
