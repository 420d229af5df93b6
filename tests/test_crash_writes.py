"""A process killed in the middle of a write never tears the file it replaces.

Each command runs in a child that is killed (os._exit, no cleanup, no `finally`) at its N-th
write point under the case's folder: the first write into a file opened for writing (half
of that write lands), a rename, an fsync or an unlink. N goes 1, 2, ... until the command finishes
untouched; after every kill the previous output must still read back whole (or, once the
final rename has happened, the new one), and after the last run the new one must.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from tests.cli_helpers import KILLED, crash_run

OLD = np.full((4, 16), 7.0, np.float32)
NEW = np.arange(64, dtype=np.float32).reshape(4, 16) / 10
TASK = "offline_review_polarity"


def sweep(tmp_path: Path, setup: Callable[[Path], None], args: list[str],
          state: Callable[[Path], object], old: object, new: object, *,
          between: tuple = (), max_points: int = 40) -> int:
    """Kill `spot ARGS` at write point 1, 2, ...; `state(w)` must be `old` or `new` (or one
    of `between`, for outputs of several files each replaced whole) after each kill, and
    `new` after the uncrashed run. Returns the number of write points."""
    template = tmp_path / "template"
    template.mkdir()
    setup(template)
    assert state(template) == old
    for n in range(1, max_points + 1):
        w = tmp_path / f"w{n}"
        shutil.copytree(template, w, symlinks=True)
        proc = crash_run(n, w, [a.replace("{w}", str(w)) for a in args])
        seen = state(w)
        if proc.returncode == KILLED:
            assert seen in (old, new, *between), f"killed at write point {n}: {seen!r}\n{proc.stderr[-2000:]}"
            continue
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert seen == new, f"finished after {n - 1} write points but reads {seen!r}"
        assert n > 1, "no write point was reached: the fault was never injected"
        return n - 1
    pytest.fail(f"still writing after {max_points} write points")


def _prompt_state(path: str) -> Callable[[Path], object]:
    def state(w: Path):
        from spot.errors import SpotError
        from spot.model.prompt_files import load_prompt

        try:
            arr = load_prompt(w / path)
        except SpotError as e:
            return f"unreadable: {e}"
        return "old" if np.array_equal(arr, OLD) else "new" if np.array_equal(arr, NEW) else arr
    return state


def _prompts(w: Path) -> None:
    from spot.model.prompt_files import save_prompt

    save_prompt(w / "new.npy", NEW)
    (w / "out").mkdir()


@pytest.mark.parametrize("fmt", ["npy", "safetensors"])
def test_prompt_export(tmp_path, fmt):
    def setup(w):
        from spot.model.prompt_files import save_prompt

        _prompts(w)
        save_prompt(w / "out" / f"p.{fmt}", OLD)

    sweep(tmp_path, setup, ["prompt", "export", "{w}/new.npy", "--format", fmt,
                            "--out", f"{{w}}/out/p.{fmt}"],
          _prompt_state(f"out/p.{fmt}"), "old", "new")


def _library(w: Path) -> None:
    from spot.library.store import PromptLibrary

    _prompts(w)
    with PromptLibrary(w / "lib", create=True) as lib:
        lib.add(task="a", prompt=OLD, embedding=OLD, model="tiny")
        lib.add(task="b", prompt=NEW, model="tiny")


def _library_state(w: Path):
    """Each entry's (task, prompt kind) in order; every listed entry's arrays must load."""
    from spot.errors import SpotError
    from spot.library.store import PromptLibrary

    try:
        with PromptLibrary(w / "lib") as lib:
            out = []
            for e in lib.entries():
                prompt = lib.load_prompt(e)
                lib.load_embedding(e)
                out.append((e.task, "old" if np.array_equal(prompt, OLD) else "new"))
            return tuple(out)
    except SpotError as e:
        return f"unreadable: {e}"


def test_library_add(tmp_path):
    sweep(tmp_path, _library, ["library", "add", "--task", "c", "--prompt", "{w}/new.npy",
                               "--embedding", "{w}/new.npy", "--root", "{w}/lib"],
          _library_state, (("a", "old"), ("b", "new")),
          (("a", "old"), ("b", "new"), ("c", "new")))


def test_library_remove(tmp_path):
    from spot.library.store import PromptLibrary

    template = tmp_path / "made"
    template.mkdir()
    _library(template)
    with PromptLibrary(template / "lib") as lib:
        entry_a = next(e.id for e in lib.entries() if e.task == "a")

    def setup(w):
        shutil.copytree(template, w, dirs_exist_ok=True)

    sweep(tmp_path, setup, ["library", "remove", entry_a, "--root", "{w}/lib"],
          _library_state, (("a", "old"), ("b", "new")), (("b", "new"),))


def test_library_export_and_retrieve_write_init(tmp_path):
    from spot.library.store import PromptLibrary

    template = tmp_path / "t0"
    template.mkdir()
    _library(template)
    with PromptLibrary(template / "lib") as lib:
        entry_b = next(e.id for e in lib.entries() if e.task == "b")
    from spot.model.prompt_files import save_prompt

    save_prompt(template / "out" / "x.npy", OLD)

    def setup(w):
        shutil.copytree(template, w, dirs_exist_ok=True)

    (tmp_path / "export").mkdir()
    sweep(tmp_path / "export", setup,
          ["library", "export", entry_b, "--out", "{w}/out/x.npy", "--root", "{w}/lib"],
          _prompt_state("out/x.npy"), "old", "new")
    # Target c's nearest source is b (its embedding is NEW), whose prompt is NEW.
    (tmp_path / "retrieve").mkdir()
    sweep(tmp_path / "retrieve", setup,
          ["retrieve", "--target", "c", "--k", "1", "--embedding", "{w}/new.npy", "--library",
           "{w}/lib", "--write-init", "{w}/out/x.npy", "--metric", "avg_euclidean"],
          _prompt_state("out/x.npy"), "old", "new")


RESULTS_OLD = "source,target,seed,score\nnone,b,0,50\na,b,0,60\n"
RESULTS_NEW = "source,target,seed,score\nnone,b,0,40\na,b,0,70\nc,b,0,45\n"


def _text_state(path: str, old: str, new: str) -> Callable[[Path], object]:
    def state(w: Path):
        p = w / path
        text = p.read_text() if p.exists() else None
        return "old" if text == old else "new" if text == new else text
    return state


def test_study_summarize_json(tmp_path):
    probe = tmp_path / "probe.csv"
    probe.write_text(RESULTS_NEW)
    from spot.analysis import transfer

    new_json = json.dumps(transfer.summarize(transfer.read_results(probe)), indent=2,
                          sort_keys=True, allow_nan=False) + "\n"

    def setup(w):
        (w / "results.csv").write_text(RESULTS_NEW)
        (w / "summary.json").write_text('{"old": true}\n')

    sweep(tmp_path, setup, ["study", "summarize", "{w}/results.csv", "--json", "{w}/summary.json"],
          _text_state("summary.json", '{"old": true}\n', new_json), "old", "new")


def test_study_collect(tmp_path):
    from spot.analysis.transfer import read_results
    from spot.workflows.study import FIELDS

    def setup(w):
        (w / "results").mkdir()
        (w / "results" / "shard-0-of-1.csv").write_text(
            ",".join(FIELDS) + "\nnone,b,0,40.0\na,b,0,70.0\n")
        (w / "results.csv").write_text(RESULTS_OLD)

    def state(w):
        try:
            rows = read_results(w / "results.csv")
        except Exception as e:  # noqa: BLE001 - a torn table is the failure being looked for
            return f"unreadable: {e}"
        scores = tuple((r.source, r.score) for r in rows)
        return {(("none", 50.0), ("a", 60.0)): "old", (("none", 40.0), ("a", 70.0)): "new"}.get(
            scores, scores)

    sweep(tmp_path, setup, ["study", "collect", "{w}"], state, "old", "new")


def test_study_plot(tmp_path):
    """Every figure file is the old one or a complete new one (a crash between two figures
    leaves some of each: each file is replaced whole, the set is not)."""
    names = ("transfer_heatmap.png", "transfer_heatmap.pdf")
    old_bytes = {"transfer_heatmap.png": b"old png", "transfer_heatmap.pdf": b"old pdf"}

    def setup(w):
        (w / "results.csv").write_text(RESULTS_NEW)
        (w / "figs").mkdir()
        for name, data in old_bytes.items():
            (w / "figs" / name).write_bytes(data)

    def complete(path: Path) -> bool:
        data = path.read_bytes()
        if path.suffix == ".png":
            return data.startswith(b"\x89PNG") and data.endswith(b"IEND\xaeB`\x82")
        return data.startswith(b"%PDF") and b"%%EOF" in data[-64:]

    def state(w):
        kinds = []
        for name in names:
            path = w / "figs" / name
            if path.read_bytes() == old_bytes[name]:
                kinds.append("old")
            elif complete(path):
                kinds.append("new")
            else:
                return f"torn {name}"
        return kinds[0] if len(set(kinds)) == 1 else "some new"

    sweep(tmp_path, setup, ["study", "plot", "{w}/results.csv", "--out", "{w}/figs"],
          state, "old", "new", between=("some new",))


def test_demo_results_csv(tmp_path):
    """The demo's results table (written once its grid has run) is replaced whole."""
    code = ("import sys; from pathlib import Path; from spot.workflows.demo import write_results_csv; "
            "write_results_csv(Path(sys.argv[-1]) / 'results.csv', "
            "[{'source': s, 'target': 'b', 'seed': 0, 'score': v} "
            "for s, v in (('none', 40.0), ('a', 70.0), ('c', 45.0))])")
    new = RESULTS_NEW.replace("\n", "\r\n").replace("40\r", "40.0\r").replace(
        "70\r", "70.0\r").replace("45\r", "45.0\r")

    def setup(w):
        (w / "results.csv").write_text(RESULTS_OLD)

    def state(w):
        data = (w / "results.csv").read_bytes().decode()
        return "old" if data == RESULTS_OLD else "new" if data == new else data

    sweep(tmp_path, setup, ["-c", code, "{w}"], state, "old", "new")


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    """Two tiny random T5s (seeds 0 and 1) in spot's native format, with a vocabulary."""
    from spot.data.offline.vocab import default_vocabulary_path
    from spot.model.checkpoints import save_native
    from spot.model.t5 import T5Config, init_params

    root = tmp_path_factory.mktemp("models")
    cfg = T5Config.preset("test_tiny", vocab_size=8192)
    for seed in (0, 1):
        save_native(root / f"m{seed}", cfg, init_params(cfg, seed))
        shutil.copyfile(default_vocabulary_path(), root / f"m{seed}" / "vocab.model")
    return root


def test_convert_overwrite(tmp_path, tiny_models):
    from spot.model.checkpoints import load_native

    def fingerprint(path):
        _, params, _ = load_native(path)
        return float(sum(np.abs(np.asarray(v, np.float64)).sum() for v in params.values()))

    old_fp, new_fp = fingerprint(tiny_models / "m0"), fingerprint(tiny_models / "m1")

    def setup(w):
        shutil.copytree(tiny_models / "m0", w / "out")
        (w / "out" / "README.md").write_text("kept\n")

    def state(w):
        if not (w / "out" / "README.md").is_file():
            return "lost README.md"
        try:
            fp = fingerprint(w / "out")
        except Exception as e:  # noqa: BLE001 - a torn checkpoint is the failure looked for
            return f"unreadable: {e}"
        return "old" if fp == old_fp else "new" if fp == new_fp else fp

    sweep(tmp_path, setup, ["convert", str(tiny_models / "m1"), "{w}/out", "--overwrite"],
          state, "old", "new")


@pytest.mark.slow
def test_predict_output(tmp_path, tiny_models):
    def setup(w):
        np.save(w / "p.npy", NEW[:, :16])
        (w / "in.jsonl").write_text('{"inputs": "review: a fine film"}\n'
                                    '{"inputs": "review: dull"}\n')
        (w / "out.jsonl").write_text('{"line": 1, "prediction": "old"}\n')

    def state(w):
        lines = (w / "out.jsonl").read_text().splitlines()
        if lines == ['{"line": 1, "prediction": "old"}']:
            return "old"
        try:
            rows = [json.loads(x) for x in lines]
        except ValueError:
            return f"torn: {lines}"
        return "new" if [r["line"] for r in rows] == [1, 2] else rows

    sweep(tmp_path, setup,
          ["predict", "--prompt", "{w}/p.npy", "--input", "{w}/in.jsonl", "--output",
           "{w}/out.jsonl", "--task", TASK, "--model", str(tiny_models / "m0"),
           "--input-length", "16", "--batch-size", "2"], state, "old", "new")
