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


def plan(sources: Sequence[str], targets: Sequence[str], seeds: int) -> list[Cell]:
    if not sources or not targets or seeds < 1:
        raise ConfigError("a study needs at least one source, one target and one seed")
    cells = [Cell("source", s, r) for r in range(seeds) for s in sources]
    cells += [Cell("none", t, r) for r in range(seeds) for t in targets]
    cells += [Cell(s, t, r) for r in range(seeds) for t in targets for s in sources]
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
    from spot.fileio import atomic_open

    out = Path(out)
    rows = [r for r in read_rows(out) if r["source"] != "source"]
    if not rows:
        raise DataError(f"{out}/results holds no finished cells yet")
    path = out / "results.csv"
    with atomic_open(path, "w") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        w.writerows({k: r[k] for k in FIELDS} for r in rows)
    return path


def run_study(base: RunConfig, *, sources: Sequence[str], targets: Sequence[str], seeds: int,
              out: str | Path, library_root: str | Path | None = None,
              source_steps: int | None = None, target_steps: int | None = None,
              shard: tuple[int, int] = (0, 1), t5: Any = None, vocab: Any = None,
              log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run this shard's unfinished cells; returns counts of done/skipped/waiting cells."""
    from spot.library.store import PromptLibrary
    from spot.model.prompt_files import load_prompt
    from spot.train.run import build_model, resolve_vocab, train

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    library = PromptLibrary(library_root or out / "library")
    done = {Cell(r["source"], r["target"], int(r["seed"])).key for r in read_rows(out)}
    mine = [c for c in plan(sources, targets, seeds) if owns(c, shard)]
    shard_file = out / "results" / f"shard-{shard[0]}-of-{shard[1]}.csv"
    t5 = t5 or build_model(base)
    vocab = vocab or resolve_vocab(base)
    counts = {"finished": 0, "skipped": 0, "waiting": 0}
    waiting: list[str] = []

    def source_prompt(task: str, seed: int) -> Path | None:
        path = out / "runs" / f"source-{task}-s{seed}" / "prompts" / "best.npy"
        summary = out / "runs" / f"source-{task}-s{seed}" / "summary.json"
        return path if path.exists() and summary.exists() else None

    for cell in _source_cells_first(mine):
        if cell.key in done:
            counts["skipped"] += 1
            continue
        overrides: dict[str, Any] = {"train.seed": cell.seed,
                                     "train.out_dir": str(out / "runs" / cell.run_name),
                                     "data.mixture": ""}
        if cell.source == "source":
            overrides.update({"data.task": cell.target, "prompt.init": "sampled_vocab"})
            if source_steps:
                overrides["train.steps"] = source_steps
        else:
            overrides["data.task"] = cell.target
            if target_steps:
                overrides["train.steps"] = target_steps
            if cell.source == "none":
                overrides["prompt.init"] = "class_labels"
            else:
                init = source_prompt(cell.source, cell.seed)
                if init is None:
                    counts["waiting"] += 1
                    waiting.append(cell.key)
                    continue
                overrides.update({"prompt.init": "file", "prompt.init_path": str(init)})
        config = apply_overrides(base, overrides)
        log(f"cell {cell.key}")
        result = train(config, t5=t5, vocab=vocab, log=lambda s: None)
        if result.best_score is None:
            raise DataError(f"{cell.target} has no validation split to score the study on")
        already = any(e.task == cell.target and str(e.run) == f"seed{cell.seed}"
                      and (e.metadata or {}).get("study") == str(out)
                      for e in library.entries(task=cell.target))
        if cell.source == "source" and not already:
            paths = result.prompt_paths
            library.add(task=cell.target, prompt=load_prompt(paths["best"]),
                        embedding=load_prompt(paths["embedding"]) if "embedding" in paths
                        else None, run=f"seed{cell.seed}", model=base.model.name,
                        step=result.best_step, metrics={"score": result.best_score},
                        study=str(out))
        _append_row(shard_file, {"source": cell.source, "target": cell.target,
                                 "seed": cell.seed, "score": f"{result.best_score:.6f}"})
        counts["finished"] += 1
    if waiting:
        log(f"{len(waiting)} cells wait for source prompts from other shards; rerun this "
            f"shard once they finish")
    return {**counts, "waiting_cells": waiting}


def _source_cells_first(cells: Iterable[Cell]) -> list[Cell]:
    return sorted(cells, key=lambda c: (c.source != "source", c.source != "none", c.key))
