"""Mixed-task inference: one frozen model serves many tasks' prompts in the same batch.

Each request carries its own prompt (per-example [B, L, E] prompts in the encoder) and, for
tasks with a closed label set, its own candidate labels (per-example rank classification);
open-ended requests are decoded greedily. Results come back in input order.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import IO, Any, Callable, Sequence

import numpy as np

from spot.errors import ConfigError, DataError, SpotError
from spot.model.api import T5, batch_pad
from spot.model.decode import EOS_ID, greedy_decode, score_candidates_per_example
from spot.train.evaluate import trim_at_eos


@dataclasses.dataclass
class Request:
    line: int
    inputs: str
    task: str | None
    prompt_key: str  # which prompt (a path, or a library entry id)
    labels: tuple[str, ...] | None  # closed label set -> rank classification
    extra: dict[str, Any]


def _round_up(n: int, multiple: int = 16) -> int:
    return max(multiple, -(-n // multiple) * multiple)


def _encode_inputs(vocab: Any, texts: Sequence[str], input_length: int) -> np.ndarray:
    ids = [list(vocab.encode(t))[: input_length - 1] + [EOS_ID] for t in texts]
    return batch_pad(ids, min(input_length, _round_up(max(len(i) for i in ids))))


def run_requests(t5: T5, vocab: Any, requests: Sequence[Request], prompts: dict[str, np.ndarray],
                 *, input_length: int = 512, max_length: int = 64,
                 batch_size: int = 32) -> list[tuple[str, float]]:
    """(prediction, score) per request, in order, with tasks mixed inside each batch.

    Ranked and decoded requests go through separate batches (they run different programs);
    within each kind, batches mix tasks and prompts freely.
    """
    results: list[tuple[str, float] | None] = [None] * len(requests)
    ranked = [i for i, r in enumerate(requests) if r.labels]
    decoded = [i for i, r in enumerate(requests) if not r.labels]
    for group, rank in ((ranked, True), (decoded, False)):
        for start in range(0, len(group), batch_size):
            idx = group[start:start + batch_size]
            reqs = [requests[i] for i in idx]
            enc = _encode_inputs(vocab, [r.inputs for r in reqs], input_length)
            prompt = np.stack([prompts[r.prompt_key] for r in reqs])
            pad = batch_size - len(reqs)  # fixed batch shape: one compile per length bucket
            if pad:
                enc = np.concatenate([enc, np.zeros((pad, enc.shape[1]), enc.dtype)])
                prompt = np.concatenate([prompt, np.repeat(prompt[:1], pad, axis=0)])
            if rank:
                cand_ids = [[list(vocab.encode(w)) + [EOS_ID] for w in r.labels] for r in reqs]
                n_c = max(len(c) for c in cand_ids)
                t_len = _round_up(max(len(x) for c in cand_ids for x in c), 8)
                cands = np.zeros((batch_size, n_c, t_len), np.int32)
                for b, c in enumerate(cand_ids):
                    cands[b, : len(c)] = batch_pad(c, t_len)
                if pad:
                    cands[len(reqs):, 0, 0] = EOS_ID
                scores = np.asarray(score_candidates_per_example(
                    t5.module, t5.params, enc, prompt, cands))
                for b, i in enumerate(idx):
                    k = int(np.argmax(scores[b]))
                    results[i] = (requests[i].labels[k], float(scores[b, k]))
            else:
                tokens, logp = greedy_decode(t5.module, t5.params, enc, prompt,
                                             max_length=max_length)
                tokens, logp = np.asarray(tokens), np.asarray(logp)
                for b, i in enumerate(idx):
                    results[i] = (vocab.decode(trim_at_eos(tokens[b])), float(logp[b]))
    return results  # type: ignore[return-value]


def run_grouped(t5: T5, vocab: Any, requests: Sequence[Request], prompts: dict[str, np.ndarray],
                **kw: Any) -> list[tuple[str, float]]:
    """One task (one prompt) at a time: the baseline mixed batching is compared against."""
    results: list[tuple[str, float] | None] = [None] * len(requests)
    keys = sorted({(r.prompt_key, r.labels or ()) for r in requests})
    for key in keys:
        idx = [i for i, r in enumerate(requests) if (r.prompt_key, r.labels or ()) == key]
        sub = run_requests(t5, vocab, [requests[i] for i in idx], prompts, **kw)
        for i, res in zip(idx, sub):
            results[i] = res
    return results  # type: ignore[return-value]


def _library_prompt_for(library: Any, task: str, entry_id: str | None) -> tuple[str, Any]:
    if entry_id:
        entry = library.get(entry_id) if hasattr(library, "get") else next(
            (e for e in library.entries() if str(e.id) == str(entry_id)), None)
        if entry is None:
            raise DataError(f"unknown library entry {entry_id!r}")
        return str(entry.id), entry
    candidates = [e for e in library.entries() if e.task == task]
    if not candidates:
        raise DataError(f"the library has no prompt for task {task!r}")
    best = max(candidates, key=lambda e: ((e.metrics or {}).get("score", float("-inf")),
                                          str(getattr(e, "created", ""))))
    return str(best.id), best


@dataclasses.dataclass(frozen=True)
class PredictConfig:
    """How `spot predict` serves a JSONL file: one prompt for every line (`prompt_path`) or
    a prompt library (`library_root`: each line's task or `entry` picks its prompt)."""

    prompt_path: str = ""
    library_root: str = ""
    default_task: str = ""  # the task of lines that name none
    input_length: int = 512
    max_length: int = 64  # decoded tokens of open-ended requests
    batch_size: int = 32
    on_error: str = "skip"  # skip: report bad lines and go on; stop: raise at the first

    def __post_init__(self) -> None:
        if bool(self.prompt_path) == bool(self.library_root):
            raise ConfigError("give exactly one of a prompt file or a prompt library")
        if self.on_error not in ("skip", "stop"):
            raise ConfigError(f"on_error must be skip or stop, got {self.on_error!r}")


class _PromptSource:
    """Validated prompts by key: the one prompt file, or library entries loaded on first use."""

    def __init__(self, t5: T5, settings: PredictConfig):
        from spot.model.prompt import validate_prompt
        from spot.model.prompt_files import load_prompt

        self.emb_dim = t5.config.emb_dim
        self.prompts: dict[str, np.ndarray] = {}
        self.library = None
        if settings.prompt_path:
            path = str(settings.prompt_path)
            self.prompts[path] = validate_prompt(load_prompt(path), self.emb_dim, source=path)
        else:
            from spot.library.store import PromptLibrary

            self.library = PromptLibrary(settings.library_root, create=False)
        self.prompt_path = str(settings.prompt_path)

    def key_for(self, task: str | None, entry_id: str | None) -> tuple[str, str | None]:
        """(prompt key, task) of one line; the task comes from the entry when the line has none."""
        from spot.model.prompt import validate_prompt

        if self.library is None:
            return self.prompt_path, task
        if task is None and not entry_id:
            raise DataError("names no task (and no `entry`) to pick a prompt")
        key, entry = _library_prompt_for(self.library, task, entry_id)
        if key not in self.prompts:
            self.prompts[key] = validate_prompt(self.library.load_prompt(entry), self.emb_dim,
                                                source=f"entry {key}")
        return key, task or entry.task


def _parse_line(raw: bytes, n: int, default_task: str | None,
                source: _PromptSource) -> Request:
    from spot.data import registry

    try:
        row = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"not valid UTF-8 JSON ({e})") from None
    if not isinstance(row, dict) or not isinstance(row.get("inputs"), str):
        raise DataError("expected an object with a string field `inputs`")
    task = row.get("task") or default_task
    labels = None
    if task is not None:
        try:
            info = registry.get(task)
        except DataError:
            raise DataError(f"unknown task {task!r}") from None
        labels = tuple(info.label_words) if info.label_words else None
    key, task = source.key_for(task, row.get("entry"))
    extra = {k: v for k, v in row.items() if k not in ("inputs", "task", "entry")}
    return Request(n, row["inputs"], task, key, labels, extra)


def parse_requests(path: Path, *, t5: T5, settings: PredictConfig,
                   warn: Callable[[str], None]) -> tuple[list[Request | None],
                                                         dict[str, np.ndarray], list[str]]:
    """Read and validate every line; bad lines are reported with their line number and
    either skipped (kept as None, reported in the output) or stop the run."""
    source = _PromptSource(t5, settings)
    out: list[Request | None] = []
    errors: list[str] = []
    with open(path, "rb") as f:
        for n, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                out.append(_parse_line(raw, n, settings.default_task or None, source))
            except SpotError as e:
                message = f"{path}:{n}: {e}"
                if settings.on_error == "stop":
                    raise DataError(message) from None
                warn(message)
                errors.append(message)
                out.append(None)
    return out, source.prompts, errors


def check_output_spares_inputs(output: str | Path, inputs: dict[str, Sequence[Any]]) -> None:
    """Refuse an output file that is one of the run's inputs ({flag: paths}), after resolving
    links, or that lies inside an input folder (a prompt library)."""
    import os

    from spot.fileio import same_file

    out_real = Path(os.path.realpath(output))
    for flag, paths in inputs.items():
        for given in paths:
            if not given:
                continue
            if same_file(output, given):
                raise DataError(f"--output {output} is the same file as {flag} {given}; "
                                "write the predictions to another file")
            if Path(given).is_dir() and Path(os.path.realpath(given)) in out_real.parents:
                raise DataError(f"--output {output} lies inside {flag} {given}; write the "
                                "predictions outside it")


def predict_jsonl(t5: T5, vocab: Any, input_path: Path, out: IO[str],
                  settings: PredictConfig, *,
                  warn: Callable[[str], None] = print) -> dict[str, int]:
    """One JSON line per input line, in order: a prediction, or the error of a bad line."""
    parsed, prompts, errors = parse_requests(input_path, t5=t5, settings=settings, warn=warn)
    good = [r for r in parsed if r is not None]
    results = run_requests(t5, vocab, good, prompts, input_length=settings.input_length,
                           max_length=settings.max_length,
                           batch_size=settings.batch_size) if good else []
    it = iter(results)
    err = iter(errors)
    written = 0
    for r in parsed:
        if r is None:
            out.write(json.dumps({"error": next(err)}) + "\n")
            continue
        prediction, score = next(it)
        record = {"line": r.line, "task": r.task, "prediction": prediction, "score": score,
                  **({"entry": r.prompt_key} if settings.library_root else {}), **r.extra}
        out.write(json.dumps(record) + "\n")
        written += 1
    return {"written": written, "skipped": len(errors)}
