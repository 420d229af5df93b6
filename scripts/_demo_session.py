"""The setup the probe and benchmark scripts share: the demo's own run machinery in this
process, on the shipped backbone (or a build of its recipe in the user cache), with the XLA
compilation cache on, writing runs under a fresh temporary folder."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any


def demo_session(prefix: str, **demo_fields: Any) -> tuple[Any, Any, Path]:
    """(session, its DemoConfig, the temporary folder): `session.train(name, overrides, seed)`
    trains one of the demo's runs; `demo_fields` override DemoConfig's defaults."""
    from spot.data.offline.backbone import EMBEDDED_RECIPE
    from spot.train.pretrain import build_backbone
    from spot.workflows import demo as demo_mod
    from spot.workflows.pool import ModelSource, TrainPool

    demo_mod.enable_compilation_cache()
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    cfg = demo_mod.DemoConfig(out=str(tmp), backbone=EMBEDDED_RECIPE, **demo_fields)
    source = ModelSource(path=str(build_backbone(cfg.backbone, log=lambda m: None)))
    pool, vocab = TrainPool(1, source=source), source.vocabulary()
    session = demo_mod._Session(demo=cfg, out=tmp, vocab=vocab, log=lambda m: None, pool=pool)
    return session, cfg, tmp


def append_row(path: str | Path, row: dict) -> None:
    """Print `row` as JSON and append it to the JSON-lines file `path`."""
    print(json.dumps(row), flush=True)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")


def score_as_it_stands(session: Any, name: str, overrides: dict, seed: int) -> float:
    """The demo's evaluation of a run's starting point, before any tuning: one step at a
    learning rate of 1e-9 (the update is far below float resolution), best score. With
    `train.mode = model` in `overrides` it scores the bare model with no prompt."""
    r = session.train(name, {**overrides, "train.steps": 1, "optimizer.learning_rate": 1e-9}, seed)
    return r.best_score
