"""`spot study run` and `spot study collect` through click's CliRunner: a real (tiny) study on
a random tiny T5 with the offline suite's vocabulary and offline tasks, plus its usage errors."""

from __future__ import annotations

import csv
import json

import pytest
from click.testing import CliRunner

from spot.cli import cli
from spot.workflows.study import plan

SOURCES = ["offline_vader_valence", "offline_pos_word"]
TARGET = "offline_review_polarity"
FAST = ["--set", "data.input_length=48", "--set", "data.target_length=4",
        "--set", "data.batch_size=8", "--set", "prompt.length=4",
        "--set", "train.eval_every=4", "--set", "train.embedding_step=2",
        "--set", "train.checkpoint_every=4", "--set", "data.max_eval_examples=16",
        "--set", "data.eval_batch_size=16", "--set", "train.progress=false",
        "--set", "train.log_every=2"]



def _invoke(args, exit_code=0):
    result = CliRunner().invoke(cli, args, catch_exceptions=True)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == exit_code, result.output
    return result


def _json(stdout: str) -> dict:
    return json.loads(stdout[stdout.index("{"):])


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_study_run_trains_the_grid_and_writes_results(tmp_path, tiny_model):
    out = tmp_path / "study"
    source = SOURCES[0]  # one source keeps it quick: a source, a baseline and a transfer cell
    args = ["study", "run", "--sources", source, "--targets", TARGET,
            "--seeds", "1", "--out", str(out), "--model", str(tiny_model), "--steps", "4",
            *FAST]
    r = _invoke(args)
    report = _json(r.stdout)
    assert report["finished"] == len(plan([source], [TARGET], 1)) == 3
    assert report["waiting"] == 0 and report["results"] == str(out / "results.csv")
    rows = _rows(out / "results.csv")
    assert sorted(r["source"] for r in rows) == ["none", source]
    assert {(r["target"], r["seed"]) for r in rows} == {(TARGET, "0")}
    assert all(0.0 <= float(r["score"]) <= 100.0 for r in rows)
    # Each transfer cell started from its source's best prompt.
    config = json.loads((out / "runs" / f"target-{TARGET}-from-{source}-s0"
                         / "config.json").read_text())
    assert config["prompt"]["init_path"] == str(out / "runs" / f"source-{source}-s0"
                                                / "prompts" / "best.npy")
    assert config["train"]["steps"] == 4 and config["prompt"]["length"] == 4
    baseline = json.loads((out / "runs" / f"target-{TARGET}-from-none-s0" / "config.json")
                          .read_text())
    assert baseline["prompt"]["init"] == "class_labels"
    from spot.library.store import PromptLibrary

    with PromptLibrary(out / "library", create=False) as lib:
        assert [e.task for e in lib.entries()] == [source]

    # A rerun finds every cell finished; `collect` rewrites the same rows.
    report = _json(_invoke(args).stdout)
    assert report["finished"] == 0 and report["skipped"] == 3
    (out / "results.csv").unlink()
    r = _invoke(["study", "collect", str(out)])
    assert "2 rows" in r.output and _rows(out / "results.csv") == rows


def test_jobs_train_cells_in_workers_with_the_same_results(tmp_path, tiny_model):
    """Two worker processes (one core each) give the rows, prompts and training logs that the
    same study gives in one process: a worker runs the very same `train`."""
    import numpy as np

    def study(out, jobs):
        args = ["study", "run", "--sources", ",".join(SOURCES), "--targets", TARGET,
                "--seeds", "1", "--out", str(out), "--model", str(tiny_model), "--steps", "4",
                "--jobs", jobs, *FAST]
        return _json(_invoke(args).stdout)

    inline, workers = study(tmp_path / "one", "1"), study(tmp_path / "two", "2")
    assert inline["finished"] == workers["finished"] == len(plan(SOURCES, [TARGET], 1)) == 5
    assert set(workers["seconds"]) == set(inline["seconds"])
    key = lambda r: (r["source"], r["target"], r["seed"])  # noqa: E731
    assert sorted(_rows(tmp_path / "one" / "results.csv"), key=key) == sorted(
        _rows(tmp_path / "two" / "results.csv"), key=key)
    for run in sorted((tmp_path / "one" / "runs").iterdir()):
        twin = tmp_path / "two" / "runs" / run.name
        best = [np.load(d / "prompts" / "best.npy") for d in (run, twin)]
        np.testing.assert_array_equal(best[0], best[1])
        logs = [[{k: v for k, v in json.loads(line).items() if k != "time"}
                 for line in (d / "metrics.jsonl").read_text().splitlines()]
                for d in (run, twin)]
        assert logs[0] == logs[1], run.name
    from spot.library.store import PromptLibrary

    with PromptLibrary(tmp_path / "two" / "library", create=False) as lib:
        assert sorted(e.task for e in lib.entries()) == sorted(SOURCES)


def test_dry_run_shards_split_the_grid(tmp_path):
    cells = []
    for i in range(3):
        r = _invoke(["study", "run", "--sources", ",".join(SOURCES),
                     "--targets", TARGET, "--seeds", "2", "--out", str(tmp_path / "s"),
                     "--shard", f"{i}/3", "--dry-run", "--set", "train.steps=7"])
        dry = json.loads(r.stdout)
        assert dry["shard"] == [i, 3] and dry["config"]["train"]["steps"] == 7
        cells += dry["cells"]
    assert sorted(cells) == sorted(c.key for c in plan(SOURCES, [TARGET], 2))
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("extra, message", [
    (["--shard", "2/2"], "--shard 2/2: need 0 <= i < n"),
    (["--shard", "half"], "--shard expects i/n"),
    (["--sources", "offline_vader_valence,no_such_task"], "unknown task or mixture 'no_such_task'"),
    (["--targets", "no_such_target"], "unknown task or mixture 'no_such_target'"),
    (["--sources", " , "], "give at least one task name"),
    (["--jobs", "0"], "jobs must be a positive count or 'auto'"),
    (["--jobs", "many"], "jobs must be a positive count or 'auto'"),
])
def test_usage_errors_exit_2_with_a_message(tmp_path, extra, message):
    args = ["study", "run", "--sources", "offline_vader_valence", "--targets", TARGET,
            "--out", str(tmp_path / "s"), *extra]
    r = _invoke(args, exit_code=2)
    assert message in r.output
    assert not (tmp_path / "s").exists()
