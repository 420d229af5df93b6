"""A model-tuning run hands the next command everything it needs: its summary names the
saved model folder, and the folder carries the run's SentencePiece vocabulary."""

from __future__ import annotations

import json

from tests.cli_helpers import invoke_ok

FAST = ["--set", "data.input_length=48", "--set", "data.target_length=4",
        "--set", "data.batch_size=8", "--set", "train.eval_every=2",
        "--set", "train.checkpoint_every=2", "--set", "data.max_eval_examples=8",
        "--set", "data.eval_batch_size=8", "--set", "train.progress=false",
        "--set", "train.log_every=2"]


_invoke = invoke_ok


def test_model_tuning_summary_names_the_model_and_eval_needs_no_vocab(tmp_path, tiny_model):
    run = tmp_path / "run"
    r = _invoke(["train-target", "--task", "offline_review_polarity", "--mode", "model",
                 "--model", tiny_model, "--steps", 2, "--out", run, *FAST])
    summary = json.loads(r.stdout[r.stdout.index("{"):])
    assert summary["model"] == str(run / "model")
    saved = run / "model" / "vocab.model"
    assert saved.read_bytes() == (tiny_model / "vocab.model").read_bytes()

    r = _invoke(["eval", "--task", "offline_review_polarity", "--checkpoint", run / "model",
                 "--input-length", 48, "--target-length", 4, "--max-examples", 8, "--json"])
    metrics = json.loads(r.stdout)
    assert 0.0 <= metrics["accuracy"] <= 100.0


def test_eval_without_a_prompt_scores_the_model_itself(tiny_model):
    # Without --prompt the model is scored as it is (a model-tuned checkpoint).
    r = _invoke(["eval", "--task", "offline_review_polarity", "--model", tiny_model,
                 "--input-length", 48, "--target-length", 4, "--max-examples", 4, "--json"])
    assert "accuracy" in json.loads(r.stdout)
