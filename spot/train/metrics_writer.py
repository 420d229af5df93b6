"""Metric sinks for a run: one JSON line per record, plus TensorBoard event files.

JSONL is the source of truth (easy to read back in a notebook); on resume, records from
steps after the restored checkpoint are dropped so the file reads as one uninterrupted run.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from spot.fileio import atomic_write_text


class MetricWriter:
    def __init__(self, out_dir: Path, *, tensorboard: bool = True):
        self.path = Path(out_dir) / "metrics.jsonl"
        self.tb_dir = Path(out_dir) / "tensorboard"
        self._tensorboard = tensorboard
        self._tb = None
        self._file = None

    def truncate_after(self, step: int) -> None:
        """Drop records of steps > `step` (they will be recomputed after a resume)."""
        if not self.path.exists():
            return
        kept = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                if json.loads(line).get("step", 0) <= step:
                    kept.append(line)
            except json.JSONDecodeError:
                continue  # a line torn by a crash
        atomic_write_text(self.path, "".join(k + "\n" for k in kept))

    def write(self, step: int, kind: str, values: dict[str, Any]) -> None:
        record = {"step": int(step), "kind": kind}
        for k, v in values.items():
            record[k] = _jsonable(v)
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
        self._file.write(json.dumps(record, sort_keys=True) + "\n")
        self._file.flush()
        if self._tensorboard:
            self._write_tb(step, kind, values)

    def _write_tb(self, step: int, kind: str, values: dict[str, Any]) -> None:
        try:
            if self._tb is None:
                from spot.quiet import import_tensorflow

                tf = import_tensorflow()

                self._tb = (tf, tf.summary.create_file_writer(str(self.tb_dir)))
            tf, writer = self._tb
            with writer.as_default():
                for k, v in values.items():
                    if isinstance(v, (int, float)) and not isinstance(v, bool):
                        tf.summary.scalar(f"{kind}/{k}", float(v), step=int(step))
            writer.flush()
        except ImportError:
            self._tensorboard = False

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._tb is not None:
            self._tb[1].close()
            self._tb = None


def _jsonable(v: Any) -> Any:
    if hasattr(v, "item") and getattr(v, "ndim", 1) == 0:
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    return v
