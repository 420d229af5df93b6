"""A task given only by `--task-file`, end to end through the CLI, in each layout of
docs/tasks.md (one file with a split column, one file per split, a TOML spec), with the
on-disk token cache on (its default): train-target, eval, retrieve (which trains the task's
embedding) and a study grid, on a random tiny T5 with the offline vocabulary."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from spot.data import pipeline
from tests.cli_helpers import invoke_ok

FAST = ["--set", "data.input_length=32", "--set", "data.target_length=4",
        "--set", "data.batch_size=4", "--set", "prompt.length=4",
        "--set", "train.eval_every=2", "--set", "train.embedding_step=2",
        "--set", "train.checkpoint_every=2", "--set", "data.eval_batch_size=8",
        "--set", "train.progress=false", "--set", "train.log_every=2"]

WORDS = ["great phone", "bad battery", "fine screen", "awful case", "lovely sound",
         "broken strap", "good value", "poor signal"]


def _rows(n: int, split: str | None = None) -> list[dict]:
    rows = []
    for i in range(n):
        text = WORDS[i % len(WORDS)]
        row = {"inputs": f"review: {text} {i}", "targets": "positive" if i % 2 == 0 else
               "negative"}
        if split is not None:
            row["split"] = split
        rows.append(row)
    return rows


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _layout(kind: str, root, name: str):
    """The task file to pass to --task-file, in the given layout."""
    if kind == "split_column":
        return _jsonl(root / f"{name}.jsonl", _rows(12, "train") + _rows(6, "validation"))
    if kind == "file_per_split":
        _jsonl(root / f"{name}.validation.jsonl", _rows(6))
        return _jsonl(root / f"{name}.train.jsonl", _rows(12))
    (root / "data").mkdir()
    with open(root / "data" / "train.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["title", "body", "stars"])
        for i in range(12):
            w.writerow([WORDS[i % len(WORDS)], f"item {i}", "5" if i % 2 == 0 else "1"])
    _jsonl(root / "data" / "dev.jsonl",
           [{"title": WORDS[i], "body": f"dev {i}", "stars": "5" if i % 2 == 0 else "1"}
            for i in range(6)])
    spec = root / f"{name}.toml"
    spec.write_text(f'name = "{name}"\nfamily = "sentiment"\n'
                    'input_template = "review: {title} {body}"\ntarget_field = "stars"\n'
                    'label_words = ["negative", "positive"]\n'
                    'label_map = { "1" = "negative", "5" = "positive" }\n'
                    'metric = ["f1", "accuracy"]\n'
                    'train = "data/train.csv"\nvalidation = "data/dev.jsonl"\n',
                    encoding="utf-8")
    return spec



@pytest.fixture
def token_cache(tmp_path, monkeypatch):
    """The token cache on (the default), in a folder of its own."""
    monkeypatch.delenv("SPOT_TOKEN_CACHE", raising=False)
    monkeypatch.setenv("SPOT_CACHE_DIR", str(tmp_path / "cache"))
    pipeline.clear_caches()
    yield tmp_path / "cache" / "tokens"
    pipeline.clear_caches()


_invoke = invoke_ok


def _json(stdout: str):
    start = min(i for i in (stdout.find("{"), stdout.find("[")) if i >= 0)
    return json.loads(stdout[start:])


@pytest.mark.parametrize("kind", ["split_column", "file_per_split", "toml_spec"])
def test_train_eval_retrieve_study_on_a_task_file(kind, tmp_path, tiny_model, token_cache):
    name = f"fcli_{kind}"
    task_file = _layout(kind, tmp_path, name)
    common = ["--model", tiny_model, "--task-file", task_file, *FAST]

    run = tmp_path / "run"
    r = _invoke(["train-target", "--task", name, "--steps", 2, "--out", run, *common])
    summary = _json(r.stdout)
    assert summary["final_step"] == 2 and summary["best_step"] == 2
    best = run / "prompts" / "best.npy"
    assert best.is_file()
    # The token cache was used: the training split's tokens are on disk under its name.
    cached = sorted(p.name.split("-")[0] for p in (token_cache / name).glob("*.npz"))
    assert cached == ["train"]

    r = _invoke(["eval", "--task", name, "--prompt", best, "--model", tiny_model,
                 "--task-file", task_file, "--input-length", 32, "--target-length", 4,
                 "--json"])
    metrics = json.loads(r.stdout)
    assert 0.0 <= metrics["score"] <= 100.0 and 0.0 <= metrics["accuracy"] <= 100.0

    from spot.library.store import PromptLibrary

    lib = tmp_path / "lib"
    with PromptLibrary(lib) as library:
        rng = np.random.default_rng(0)
        for task in ("other_a", "other_b"):
            library.add(task=task, prompt=rng.normal(size=(4, 16)).astype(np.float32),
                        metrics={"score": 50.0})
    r = _invoke(["retrieve", "--target", name, "--k", 2, "--library", lib, "--json",
                 "--out", tmp_path / "emb", *common])
    ranked = _json(r.stdout)
    assert sorted(x["task"] for x in ranked) == ["other_a", "other_b"]
    assert (tmp_path / "emb" / "prompts" / "embedding_step2.npy").is_file()

    study = tmp_path / "study"
    r = _invoke(["study", "run", "--sources", name, "--targets", name, "--seeds", 1,
                 "--out", study, "--steps", 2, *common])
    report = _json(r.stdout)
    assert report["finished"] == 3 and report["waiting"] == 0
    with open(study / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted(row["source"] for row in rows) == sorted(["none", name])
    assert all(row["target"] == name and 0.0 <= float(row["score"]) <= 100.0 for row in rows)


def test_train_on_a_task_file_without_validation_rows(tmp_path, tiny_model, token_cache):
    path = _jsonl(tmp_path / "fcli_trainonly.jsonl", _rows(10, "train"))
    run = tmp_path / "run"
    r = _invoke(["train-target", "--task", "fcli_trainonly", "--model", tiny_model,
                 "--task-file", path, "--steps", 2, "--out", run, *FAST])
    assert _json(r.stdout)["final_step"] == 2
    assert "training without evaluation" in r.stderr
    assert (run / "prompts" / "final.npy").is_file()
    assert [p.name.split("-")[0] for p in (token_cache / "fcli_trainonly").glob("*.npz")] == [
        "train"]
