"""The transfer study grid: sources x targets x seeds, resumable and shardable.

Cells:
  ("source", s, seed)   train a source prompt on task s; its best prompt and its task
                        embedding go into the library;
  ("none", t, seed)     the target from scratch (class-label init): the baseline;
  (s, t, seed)          the target initialized from source s's prompt of the same seed.

Each shard (`--shard i/n`) owns the cells whose stable hash falls in it and appends its rows to
its own file `OUT/results/shard-i-of-n.csv`, so shards on several machines need nothing shared
but the output folder. Finished cells are skipped on a rerun; an interrupted cell resumes from
its run folder's checkpoint. A target cell whose source prompt is not there yet (another shard
is still training it) is left for a later rerun and reported.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import io
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from spot.config import RunConfig, apply_overrides
from spot.errors import ConfigError, DataError

FIELDS = ("source", "target", "seed", "score")


@dataclasses.dataclass(frozen=True)
class Cell:
    source: str  # a task, "none" (baseline) or "source" (a source-training cell)
    target: str
    seed: int

    @property
    def key(self) -> str:
        return f"{self.source}|{self.target}|{self.seed}"

    @property
    def run_name(self) -> str:
        if self.source == "source":
            return f"source-{self.target}-s{self.seed}"
        return f"target-{self.target}-from-{self.source}-s{self.seed}"


def parse_shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ConfigError(f"--shard expects i/n (e.g. 0/4), got {text!r}") from None
    if n < 1 or not 0 <= i < n:
        raise ConfigError(f"--shard {text}: need 0 <= i < n")
    return i, n


def plan(sources: Sequence[str], targets: Sequence[str], seeds: int,
         first_seed: int = 0) -> list[Cell]:
    """Every cell of the grid, seeds `first_seed .. first_seed + seeds - 1`."""
    if not sources or not targets or seeds < 1:
        raise ConfigError("a study needs at least one source, one target and one seed")
    if first_seed < 0:
        raise ConfigError(f"the first seed must be 0 or more, got {first_seed}")
    runs = range(first_seed, first_seed + seeds)
    cells = [Cell("source", s, r) for r in runs for s in sources]
    cells += [Cell("none", t, r) for r in runs for t in targets]
    cells += [Cell(s, t, r) for r in runs for t in targets for s in sources]
    return cells


def owns(cell: Cell, shard: tuple[int, int]) -> bool:
    digest = hashlib.sha256(cell.key.encode()).digest()
    return int.from_bytes(digest[:8], "big") % shard[1] == shard[0]


def _complete_bytes(path: Path) -> bytes:
    """The file up to its last newline: a line a crash cut short is not a row."""
    data = path.read_bytes()
    return data[: data.rfind(b"\n") + 1]


def read_rows(out: Path) -> list[dict[str, str]]:
    """Every finished row of every shard (a torn last line from a crash is ignored)."""
    rows = []
    for path in sorted((out / "results").glob("shard-*.csv")):
        text = _complete_bytes(path).decode("utf-8")
        for row in csv.DictReader(io.StringIO(text, newline="")):
            if all(row.get(k) not in (None, "") for k in FIELDS):
                rows.append(row)
    return rows


def _append_row(path: Path, row: dict[str, Any]) -> None:
    """Append one row (fsynced). A torn last line left by a crash is cut off first, so it
    neither runs into the new row nor ever reads as a finished one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    keep = len(_complete_bytes(path)) if path.exists() else 0
    if path.exists() and keep != path.stat().st_size:
        os.truncate(path, keep)
    with open(path, "a", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        if keep == 0:
            w.writeheader()
        w.writerow({k: row[k] for k in FIELDS})
        f.flush()
        os.fsync(f.fileno())


def collect(out: str | Path) -> Path:
    """Merge the shards' rows into OUT/results.csv (source cells are not results rows)."""
    out = Path(out)
    rows = [r for r in read_rows(out) if r["source"] != "source"]
    if not rows:
        raise DataError(f"{out}/results holds no finished cells yet")
    return write_results(out / "results.csv", rows)


def write_results(path: str | Path, rows: Iterable[dict[str, Any]]) -> Path:
    """A results table (columns FIELDS), written atomically: a crash keeps the previous
    table of a rerun whole."""
    from spot.fileio import atomic_open

    path = Path(path)
    with atomic_open(path, "w") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        w.writerows({k: r[k] for k in FIELDS} for r in rows)
    return path


@dataclasses.dataclass(frozen=True)
class StudyConfig:
    """One shard of a study grid (what `spot study run` turns its flags into): sources x
    targets x seeds `first_seed .. first_seed + seeds - 1`, written under `out`."""

    sources: tuple[str, ...]
    targets: tuple[str, ...]
    out: str
    seeds: int = 1
    first_seed: int = 0
    library_root: str = ""  # empty: OUT/library
    source_steps: int | None = None  # None: the base config's train.steps
    target_steps: int | None = None
    shard: tuple[int, int] = (0, 1)

    def __post_init__(self) -> None:
        # Lists and paths are accepted and kept as tuples and strings (the dataclass is frozen).
        for name in ("sources", "targets"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        object.__setattr__(self, "out", str(self.out))
        object.__setattr__(self, "library_root", str(self.library_root or ""))
        object.__setattr__(self, "shard", tuple(self.shard))

    def cells(self) -> list[Cell]:
        """This shard's cells of the grid."""
        return [c for c in plan(self.sources, self.targets, self.seeds, self.first_seed)
                if owns(c, self.shard)]


def shard_file(out: str | Path, shard: tuple[int, int]) -> Path:
    return Path(out) / "results" / f"shard-{shard[0]}-of-{shard[1]}.csv"


def run_prompts(run_dir: str | Path) -> dict[str, Path]:
    """The prompts of a finished run (kind -> path: best, embedding, final), from its
    summary.json; {} while the run has not finished."""
    import json

    run_dir = Path(run_dir)
    summary = run_dir / "summary.json"
    if not summary.exists():
        return {}
    named = json.loads(summary.read_text(encoding="utf-8")).get("prompts") or {}
    paths = {kind: run_dir / rel for kind, rel in named.items()}
    if "best" not in paths and (run_dir / "prompts" / "best.npy").exists():
        paths["best"] = run_dir / "prompts" / "best.npy"
    return {kind: path for kind, path in paths.items() if path.exists()}


def source_prompt(out: str | Path, task: str, seed: int) -> Path | None:
    """The best prompt of a finished source cell, or None while it is not there."""
    return run_prompts(Path(out) / "runs" / Cell("source", task, seed).run_name).get("best")


def cell_overrides(cell: Cell, study: StudyConfig) -> dict[str, Any] | None:
    """The config overrides of one cell; None for a transfer cell whose source prompt is not
    there yet (another shard is still training it)."""
    out = Path(study.out)
    overrides: dict[str, Any] = {"train.seed": cell.seed, "data.task": cell.target,
                                 "train.out_dir": str(out / "runs" / cell.run_name),
                                 "data.mixture": ""}
    steps = study.source_steps if cell.source == "source" else study.target_steps
    if steps:
        overrides["train.steps"] = steps
    if cell.source == "source":
        overrides["prompt.init"] = "sampled_vocab"
    elif cell.source == "none":
        overrides["prompt.init"] = "class_labels"
    else:
        init = source_prompt(out, cell.source, cell.seed)
        if init is None:
            return None
        overrides.update({"prompt.init": "file", "prompt.init_path": str(init)})
    return overrides


def _add_source_to_library(library: Any, cell: Cell, result: Any, model: str, out: str) -> None:
    """A finished source cell's best prompt and task embedding, once per study and seed."""
    from spot.model.prompt_files import load_prompt

    already = any(str(e.run) == f"seed{cell.seed}" and (e.metadata or {}).get("study") == out
                  for e in library.entries(task=cell.target))
    if already:
        return
    paths = result.prompt_paths
    library.add(task=cell.target, prompt=load_prompt(paths["best"]),
                embedding=load_prompt(paths["embedding"]) if "embedding" in paths else None,
                run=f"seed{cell.seed}", model=model, step=result.best_step,
                metrics={"score": result.best_score}, study=out)


def run_study(base: RunConfig, study: StudyConfig, *, t5: Any = None, vocab: Any = None,
              adjust: Callable[[RunConfig], RunConfig] | None = None,
              log: Callable[[str], None] = print,
              step_cache: Any = None, pool: Any = None, jobs: int = 1) -> dict[str, Any]:
    """Run this shard's unfinished cells; returns counts of done/skipped/waiting cells and
    the seconds each newly trained cell took. `adjust` may change each cell's config last
    (the demo fits the input length to the cell's task). The cells share one jitted step
    (`step_cache`, a `spot.train.step_cache.StepCache`; a new one when None), so a caller
    that runs more than the grid passes its own.

    `jobs` > 1 trains that many cells at a time in worker processes
    (`spot.workflows.pool.TrainPool`); a caller with its own pool passes `pool` instead.
    Either way this process alone writes the shard's rows and the library."""

    from spot.library.store import PromptLibrary
    from spot.workflows.pool import ModelSource, TrainPool

    out = Path(study.out)
    out.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        if pool is None:
            pool = stack.enter_context(TrainPool(jobs, t5=t5, vocab=vocab, step_cache=step_cache,
                                                 source=ModelSource(config=base)))
        library = stack.enter_context(contextlib.closing(
            PromptLibrary(study.library_root or out / "library")))
        return _run_cells(base, study, library, pool=pool, adjust=adjust, log=log)


def _run_cells(base: RunConfig, study: StudyConfig, library: Any, *, pool: Any,
               adjust: Callable[[RunConfig], RunConfig] | None,
               log: Callable[[str], None]) -> dict[str, Any]:
    """Submit every cell whose source prompt is there (sources first), record each as it
    finishes, and submit the transfers a finished source unblocks."""
    from concurrent.futures import FIRST_COMPLETED, wait

    out = Path(study.out)
    done = {Cell(r["source"], r["target"], int(r["seed"])).key for r in read_rows(out)}
    rows_file = shard_file(out, study.shard)
    counts = {"finished": 0, "skipped": 0, "waiting": 0}
    seconds: dict[str, float] = {}
    pending: list[Cell] = []
    for cell in _source_cells_first(study.cells()):
        if cell.key in done:
            counts["skipped"] += 1
        else:
            pending.append(cell)
    running: dict[Any, Cell] = {}

    def record(cell: Cell, result: Any) -> None:
        if result.best_score is None:
            raise DataError(f"{cell.target} has no validation split to score the study on")
        if cell.source == "source":
            _add_source_to_library(library, cell, result, base.model.name, str(out))
        _append_row(rows_file, {"source": cell.source, "target": cell.target,
                                "seed": cell.seed, "score": f"{result.best_score:.6f}"})
        seconds[cell.run_name] = result.seconds
        counts["finished"] += 1
        log(f"cell {cell.key}: {result.best_score:.2f} ({result.seconds:.0f}s)")

    try:
        while True:
            blocked: list[Cell] = []
            for cell in pending:
                overrides = cell_overrides(cell, study)
                if overrides is None:  # its source prompt is not there yet
                    blocked.append(cell)
                    continue
                config = apply_overrides(base, overrides)
                config = adjust(config) if adjust else config
                log(f"cell {cell.key}: started")
                future = pool.submit(config)
                if future.done():  # trained in this process: record it before the next
                    record(cell, future.result())
                else:
                    running[future] = cell
            pending = blocked
            if not running:
                break
            finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in sorted(finished, key=lambda f: running[f].key):
                record(running.pop(future), future.result())
    finally:
        for future in running:
            future.cancel()
    waiting = [c.key for c in pending]
    counts["waiting"] = len(waiting)
    if waiting:
        log(f"{len(waiting)} cells wait for source prompts from other shards; rerun this "
            f"shard once they finish")
    return {**counts, "waiting_cells": waiting, "seconds": seconds}


def _source_cells_first(cells: Iterable[Cell]) -> list[Cell]:
    return sorted(cells, key=lambda c: (c.source != "source", c.source != "none", c.key))
