"""The study grid: sharding, skipping finished cells, resuming after a crash, collecting rows.

Training is replaced by a deterministic stand-in so the grid logic is tested in isolation;
the real training path is covered by tests/train and the demo test.
"""

from __future__ import annotations

import csv
import json
import zlib
from pathlib import Path

import numpy as np
import pytest

from spot.config import RunConfig, apply_overrides
from spot.errors import ConfigError
from spot.train.loop import RunResult
from spot.workflows.study import StudyConfig, collect, parse_shard, plan, run_study


class FakeTrainer:
    def __init__(self, crash_on: str | None = None):
        self.calls: list[str] = []
        self.crash_on = crash_on

    def __call__(self, config, t5=None, vocab=None, log=None, **options):
        from spot.model.prompt_files import save_prompt

        out = Path(config.train.out_dir)
        self.calls.append(out.name)
        if self.crash_on and self.crash_on in out.name:
            self.crash_on = None
            raise RuntimeError("simulated crash")
        task = config.data.task
        seed = config.train.seed
        source = Path(config.prompt.init_path).parts[-3] if config.prompt.init == "file" else ""
        score = 50.0 + zlib.crc32(f"{task}|{source}".encode()) % 30 + seed
        rng = np.random.default_rng(len(out.name))
        paths = {}
        for kind in ("best", "embedding"):
            paths[kind] = save_prompt(out / "prompts" / f"{kind}.npy",
                                      rng.normal(size=(3, 4)).astype(np.float32))
        (out / "summary.json").write_text(json.dumps({"best_score": score}))
        return RunResult(out_dir=out, final_step=10, best_step=10, best_score=score,
                         best_metrics={}, prompt_paths=paths, resumed_from=None, seconds=0.01)


@pytest.fixture
def fake(monkeypatch):
    trainer = FakeTrainer()
    import spot.train.run as run

    monkeypatch.setattr(run, "train", trainer)
    monkeypatch.setattr(run, "build_model", lambda config: object())
    monkeypatch.setattr(run, "resolve_vocab", lambda config: object())
    return trainer


def _base():
    return apply_overrides(RunConfig(), {"data.task": "x", "model.name": "test_tiny"})


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_plan_and_shard_parsing():
    cells = plan(["a", "b"], ["t"], 2)
    assert len(cells) == 2 * 2 + 1 * 2 + 2 * 1 * 2
    assert parse_shard("1/4") == (1, 4)
    for bad in ("4/4", "x", "1/0"):
        with pytest.raises(ConfigError):
            parse_shard(bad)


def test_shards_cover_the_grid_once_and_reruns_skip(tmp_path, fake):
    kw = dict(sources=["a", "b", "c"], targets=["t1", "t2"], seeds=2, out=tmp_path)
    quiet = lambda s: None  # noqa: E731
    first = [run_study(_base(), StudyConfig(shard=(i, 3), **kw), log=quiet) for i in range(3)]
    # Target cells whose source prompt another shard trains later wait for a rerun.
    second = [run_study(_base(), StudyConfig(shard=(i, 3), **kw), log=quiet) for i in range(3)]
    assert sum(r["waiting"] for r in second) == 0
    total = sum(r["finished"] for r in first + second)
    assert total == len(plan(["a", "b", "c"], ["t1", "t2"], 2))
    results = _rows(collect(tmp_path))
    assert len(results) == 2 * 2 + 3 * 2 * 2  # baselines + transfers (source cells excluded)
    assert len({(r["source"], r["target"], r["seed"]) for r in results}) == len(results)
    calls = len(fake.calls)
    run_study(_base(), StudyConfig(**kw), log=quiet)
    assert len(fake.calls) == calls  # everything finished: nothing retrained
    from spot.library.store import PromptLibrary

    lib = PromptLibrary(tmp_path / "library")
    assert sorted(e.task for e in lib.entries()) == ["a", "a", "b", "b", "c", "c"]


def test_crash_then_resume_loses_and_duplicates_nothing(tmp_path, monkeypatch, fake):
    fake.crash_on = "target-t1-from-b-s0"
    grid = StudyConfig(sources=["a", "b"], targets=["t1"], seeds=1, out=tmp_path)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_study(_base(), grid, log=lambda s: None)
    partial = len(_rows(next((tmp_path / "results").glob("shard-*.csv"))))
    assert partial >= 2
    report = run_study(_base(), grid, log=lambda s: None)
    assert report["skipped"] == partial
    rows = _rows(collect(tmp_path))
    assert sorted((r["source"], r["target"]) for r in rows) == [("a", "t1"), ("b", "t1"),
                                                                ("none", "t1")]


def test_first_seed_and_adjust_shape_every_cell(tmp_path, fake):
    from spot.config import apply_overrides as override

    assert [c.seed for c in plan(["a"], ["t"], 2, first_seed=5)] == [5, 6, 5, 6, 5, 6]
    seen = []

    def adjust(config):
        seen.append(config.train.out_dir)
        return override(config, {"data.input_length": 24})

    grid = StudyConfig(sources=["a"], targets=["t"], seeds=1, first_seed=3, out=tmp_path,
                       source_steps=7, target_steps=5)
    report = run_study(_base(), grid, adjust=adjust, log=lambda s: None)
    assert report["finished"] == 3 and set(report["seconds"]) == set(fake.calls)
    assert sorted(fake.calls) == ["source-a-s3", "target-t-from-a-s3", "target-t-from-none-s3"]
    assert len(seen) == 3
    assert {r["seed"] for r in _rows(collect(tmp_path))} == {"3"}
