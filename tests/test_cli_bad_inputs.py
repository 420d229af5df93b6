"""Every command against its common bad inputs: missing, empty and wrong-type files, negative
and zero counts, NaN, the same file as input and output, an output inside the input folder,
an existing output and a read-only output folder.

Each row must exit with status 2, print exactly one line stating the problem (matching the
row's pattern), print no traceback, and leave every file that existed before as it was (and
create none). Rows run in-process through `spot.cli.main`, the console entry point; a few
also run the real entry in a subprocess. Bad inputs fail before any model is compiled, so
the rows that name a model use a tiny random one.
"""

from __future__ import annotations

import os
import re
import shutil
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.cli_helpers import changes, read_only, run_spot, snapshot, spot_subprocess

NOT_AN_ID = "ffffffffffffffff"
TASK = "offline_review_polarity"


@dataclass(frozen=True)
class Row:
    id: str
    args: tuple[str, ...]  # "{w}" is the row's copy of the world, "{a}" library entry a's id
    expect: str  # regex the one error line must match
    read_only: str = ""  # a folder under {w} made unwritable for the run


def R(id, args, expect, **kw):
    return Row(id, tuple(args.split()), expect, **kw)


M = "--model {w}/model"
LIB = "--library {w}/lib"
ROOT = "--root {w}/lib"

ROWS = [
    # prompt info / export
    R("prompt-info/missing", "prompt info {w}/missing.npy", r"missing\.npy: no such"),
    R("prompt-info/empty", "prompt info {w}/empty.npy", r"empty\.npy"),
    R("prompt-info/wrong-type", "prompt info {w}/notes.txt", r"notes\.txt"),
    R("prompt-info/folder", "prompt info {w}/emptydir", r"emptydir"),
    R("prompt-info/nan", "prompt info {w}/nan.npy", r"nan\.npy.*NaN"),
    R("prompt-export/missing", "prompt export {w}/missing.npy --format npy --out {w}/out/x.npy",
      r"missing\.npy"),
    R("prompt-export/nan-over-existing",
      "prompt export {w}/nan.npy --format npy --out {w}/out/existing.npy", r"NaN"),
    R("prompt-export/same-file", "prompt export {w}/p.npy --format npy --out {w}/p.npy",
      r"p\.npy.*(same|being exported)"),
    R("prompt-export/wrong-suffix",
      "prompt export {w}/p.npy --format npy --out {w}/out/x.safetensors", r"\.safetensors"),
    R("prompt-export/peft-no-base", "prompt export {w}/p.npy --format peft --out {w}/out/peft",
      r"--base-model"),
    R("prompt-export/read-only", "prompt export {w}/p.npy --format npy --out {w}/ro/x.npy",
      r"/ro\b", read_only="ro"),
    # library
    R("library-add/missing", f"library add --task c --prompt {{w}}/missing.npy {ROOT}",
      r"missing\.npy"),
    R("library-add/empty", f"library add --task c --prompt {{w}}/empty.npy {ROOT}", r"empty\.npy"),
    R("library-add/wrong-type", f"library add --task c --prompt {{w}}/notes.txt {ROOT}",
      r"notes\.txt"),
    R("library-add/nan", f"library add --task c --prompt {{w}}/nan.npy {ROOT}", r"NaN"),
    R("library-add/nan-metric", f"library add --task c --prompt {{w}}/p.npy --metric acc=nan {ROOT}",
      r"acc.*finite"),
    R("library-add/negative-step", f"library add --task c --prompt {{w}}/p.npy --step -1 {ROOT}",
      r"step.*-1"),
    R("library-add/read-only", f"library add --task c --prompt {{w}}/p.npy {ROOT}", r"/lib\b",
      read_only="lib"),
    R("library-list/missing", "library list --root {w}/nolib", r"nolib"),
    R("library-list/root-is-file", "library list --root {w}/notes.txt", r"notes\.txt"),
    R("library-show/unknown", f"library show {NOT_AN_ID} {ROOT}", NOT_AN_ID),
    R("library-remove/unknown", f"library remove {NOT_AN_ID} {ROOT}", NOT_AN_ID),
    R("library-export/unknown", f"library export {NOT_AN_ID} --out {{w}}/out/x.npy {ROOT}",
      NOT_AN_ID),
    R("library-export/into-library", f"library export {{a}} --out {{w}}/lib/arrays/x.npy {ROOT}",
      r"inside the library"),
    R("library-export/read-only", f"library export {{a}} --out {{w}}/ro/x.npy {ROOT}", r"/ro\b",
      read_only="ro"),
    R("library-rank/nan", f"library rank {{w}}/nan.npy {ROOT}", r"NaN"),
    R("library-rank/empty", f"library rank {{w}}/empty.npy {ROOT}", r"empty\.npy"),
    R("library-rank/k-negative", f"library rank {{w}}/e.npy --k -1 {ROOT}", r"\bk\b.*-1\b"),
    R("library-rank/k-zero", f"library rank {{w}}/e.npy --k 0 {ROOT}", r"\bk\b.*\b0\b"),
    R("library-rank/metric", f"library rank {{w}}/e.npy --metric cosine {ROOT}", r"cosine"),
    R("library-import/empty", f"library import {{w}}/empty.npy {ROOT}", r"empty\.npy"),
    R("library-cleanup/negative", f"library cleanup --min-age -1 {ROOT}", r"min.age.*-1"),
    R("library-cleanup/nan", f"library cleanup --min-age nan {ROOT}", r"min.age.*nan"),
    # retrieval
    R("retrieve/k-negative", f"retrieve --target b --k -1 --embedding {{w}}/e.npy {LIB}",
      r"\bk\b.*-1\b"),
    R("retrieve/k-zero", f"retrieve --target b --k 0 --embedding {{w}}/e.npy {LIB}", r"\bk\b.*\b0\b"),
    R("retrieve/nan", f"retrieve --target b --embedding {{w}}/nan.npy {LIB}", r"NaN"),
    R("retrieve/missing-library", "retrieve --target b --embedding {w}/e.npy --library {w}/nolib",
      r"nolib"),
    R("retrieve/write-init-is-embedding",
      f"retrieve --target b --k 1 --embedding {{w}}/e.npy {LIB} --write-init {{w}}/e.npy",
      r"--write-init .*e\.npy"),
    R("retrieve/write-init-in-library",
      f"retrieve --target b --k 1 --embedding {{w}}/e.npy {LIB} --write-init {{w}}/lib/arrays/i.npy",
      r"inside --library"),
    R("retrieve/write-init-read-only",
      f"retrieve --target b --k 1 --embedding {{w}}/e.npy {LIB} --write-init {{w}}/ro/i.npy",
      r"/ro\b", read_only="ro"),
    R("transfer/k-zero", f"transfer --target b --k 0 --embedding {{w}}/e.npy {LIB} {M}", r"\bk\b.*\b0\b"),
    R("affinity-train/empty", f"affinity train --results {{w}}/empty.csv {LIB} --out {{w}}/out/aff",
      r"empty\.csv"),
    R("affinity-train/nan", f"affinity train --results {{w}}/nan.csv {LIB} --out {{w}}/out/aff",
      r"nan\.csv:3"),
    R("affinity-train/steps-negative",
      f"affinity train --results {{w}}/results.csv {LIB} --out {{w}}/out/aff --steps -5",
      r"steps.*-5"),
    R("affinity-train/steps-zero",
      f"affinity train --results {{w}}/results.csv {LIB} --out {{w}}/out/aff --steps 0",
      r"steps.*0"),
    R("affinity-train/beta-nan",
      f"affinity train --results {{w}}/results.csv {LIB} --out {{w}}/out/aff --beta nan",
      r"beta.*nan"),
    R("affinity-train/out-is-library",
      f"affinity train --results {{w}}/results.csv {LIB} --out {{w}}/lib --steps 2",
      r"lib.*not an affinity scorer"),
    R("affinity-rank/not-a-scorer", f"affinity rank --scorer {{w}}/emptydir --embedding {{w}}/e.npy {LIB}",
      r"emptydir"),
    R("affinity-rank/k-negative",
      f"affinity rank --scorer {{w}}/emptydir --embedding {{w}}/e.npy --k -2 {LIB}", r"\bk\b.*-2\b"),
    # study
    R("study-summarize/missing", "study summarize {w}/missing.csv", r"missing\.csv"),
    R("study-summarize/empty", "study summarize {w}/empty.csv", r"empty\.csv"),
    R("study-summarize/wrong-type", "study summarize {w}/notes.txt", r"notes\.txt"),
    R("study-summarize/nan", "study summarize {w}/nan.csv", r"nan\.csv:3.*finite"),
    R("study-summarize/over-100", "study summarize {w}/big.csv", r"big\.csv:3.*160"),
    R("study-summarize/json-is-results", "study summarize {w}/results.csv --json {w}/results.csv",
      r"--json .*results\.csv"),
    R("study-summarize/json-read-only", "study summarize {w}/results.csv --json {w}/ro/s.json",
      r"/ro\b", read_only="ro"),
    R("study-plot/out-is-file", "study plot {w}/results.csv --out {w}/notes.txt", r"notes\.txt"),
    R("study-plot/nan", "study plot {w}/nan.csv --out {w}/out/figs", r"nan\.csv:3"),
    R("study-plot/read-only", "study plot {w}/results.csv --out {w}/ro", r"/ro\b", read_only="ro"),
    R("study-collect/missing", "study collect {w}/nostudy", r"nostudy"),
    R("study-collect/no-cells", "study collect {w}/emptydir", r"emptydir"),
    R("study-run/seeds-zero", "study run --sources a --targets b --out {w}/out/st --seeds 0",
      r"--seeds"),
    R("study-run/no-sources", "study run --sources , --targets b --out {w}/out/st", r"--sources"),
    R("study-run/source-steps-zero",
      "study run --sources a --targets b --out {w}/out/st --source-steps 0", r"--source-steps"),
    R("study-run/shard", "study run --sources a --targets b --out {w}/out/st --shard 2/1",
      r"--shard"),
    R("study-run/steps-negative", "study run --sources a --targets b --out {w}/out/st --steps -1",
      r"steps.*-1"),
    # tasks
    R("tasks/task-file-empty", "tasks --task-file {w}/empty.jsonl", r"empty\.jsonl"),
    R("tasks/task-file-missing", "tasks --task-file {w}/missing.jsonl", r"missing\.jsonl"),
    R("tasks/task-file-binary", "tasks --task-file {w}/binary.jsonl", r"binary\.jsonl:1"),
    R("tasks/task-file-wrong-type", "tasks --task-file {w}/notes.txt", r"notes\.txt"),
    R("tasks-show/unknown", "tasks show nosuch", r"nosuch"),
    R("tasks-show/num-negative", f"tasks show {TASK} -n -1 --vocab {{w}}/model/vocab.model",
      r"--num.*-1"),
    R("tasks-show/num-zero", f"tasks show {TASK} -n 0 --vocab {{w}}/model/vocab.model",
      r"--num.*0"),
    # training
    R("train-source/steps-negative", f"train-source --task {TASK} --steps -1 {M} --out {{w}}/out/r",
      r"steps.*-1"),
    R("train-source/steps-zero", f"train-source --task {TASK} --steps 0 {M} --out {{w}}/out/r",
      r"steps.*0"),
    R("train-source/batch-zero", f"train-source --task {TASK} --batch-size 0 {M} --out {{w}}/out/r",
      r"batch_size.*0"),
    R("train-source/lr-nan",
      f"train-source --task {TASK} --set optimizer.learning_rate=nan {M} --out {{w}}/out/r",
      r"learning_rate.*nan"),
    R("train-source/lr-inf",
      f"train-source --task {TASK} --set optimizer.learning_rate=inf {M} --out {{w}}/out/r",
      r"learning_rate.*inf"),
    R("train-source/config-wrong-type", f"train-source --task {TASK} --config {{w}}/notes.txt {M}",
      r"notes\.txt"),
    R("train-source/config-missing", f"train-source --task {TASK} --config {{w}}/missing.toml {M}",
      r"missing\.toml"),
    R("train-source/init-missing",
      f"train-source --task {TASK} --init {{w}}/missing.npy {M} --out {{w}}/out/r --steps 2",
      r"missing\.npy"),
    R("train-source/init-nan",
      f"train-source --task {TASK} --init {{w}}/nan.npy {M} --out {{w}}/out/r --steps 2", r"NaN"),
    R("train-source/unknown-task", f"train-source --task nosuch {M} --out {{w}}/out/r --steps 2",
      r"nosuch"),
    R("train-source/out-is-file", f"train-source --task {TASK} {M} --out {{w}}/notes.txt",
      r"notes\.txt"),
    R("train-source/task-file-empty",
      f"train-source --task empty --task-file {{w}}/empty.jsonl {M} --out {{w}}/out/r --steps 2",
      r"empty\.jsonl"),
    R("train-target/init-empty",
      f"train-target --task {TASK} --init {{w}}/empty.npy {M} --out {{w}}/out/r --steps 2",
      r"empty\.npy"),
    R("eval/prompt-missing", f"eval --task {TASK} --prompt {{w}}/missing.npy {M}", r"missing\.npy"),
    R("eval/prompt-nan", f"eval --task {TASK} --prompt {{w}}/nan.npy {M}", r"NaN"),
    R("eval/batch-zero", f"eval --task {TASK} --prompt {{w}}/p.npy {M} --batch-size 0",
      r"--batch-size.*0"),
    R("eval/max-examples-negative", f"eval --task {TASK} --prompt {{w}}/p.npy {M} --max-examples -1",
      r"max_examples.*-1"),
    R("eval/input-length-zero", f"eval --task {TASK} --prompt {{w}}/p.npy {M} --input-length 0",
      r"input.length.*0"),
    R("eval/unknown-task", f"eval --task nosuch --prompt {{w}}/p.npy {M}", r"nosuch"),
    # predict
    R("predict/input-missing", f"predict --prompt {{w}}/p.npy --input {{w}}/missing.jsonl {M}",
      r"missing\.jsonl"),
    R("predict/output-is-input",
      f"predict --prompt {{w}}/p.npy --input {{w}}/in.jsonl --output {{w}}/in.jsonl --task {TASK} {M}",
      r"--output .*same file as --input"),
    R("predict/output-is-prompt",
      f"predict --prompt {{w}}/p.npy --input {{w}}/in.jsonl --output {{w}}/p.npy --task {TASK} {M}",
      r"--output .*same file as --prompt"),
    R("predict/output-in-library",
      f"predict {LIB} --input {{w}}/in.jsonl --output {{w}}/lib/x.jsonl --task {TASK} {M}",
      r"--output .*inside --library"),
    R("predict/batch-zero",
      f"predict --prompt {{w}}/p.npy --input {{w}}/in.jsonl --output {{w}}/out/existing.jsonl "
      f"--task {TASK} {M} --batch-size 0", r"--batch-size.*0"),
    R("predict/max-length-zero",
      f"predict --prompt {{w}}/p.npy --input {{w}}/in.jsonl --output {{w}}/out/existing.jsonl "
      f"--task {TASK} {M} --max-length 0", r"--max-length.*0"),
    R("predict/input-length-negative",
      f"predict --prompt {{w}}/p.npy --input {{w}}/in.jsonl --output {{w}}/out/existing.jsonl "
      f"--task {TASK} {M} --input-length -1", r"--input-length.*-1"),
    R("predict/nan-over-existing",
      f"predict --prompt {{w}}/nan.npy --input {{w}}/in.jsonl --output {{w}}/out/existing.jsonl "
      f"--task {TASK} {M}", r"NaN"),
    R("predict/read-only",
      f"predict --prompt {{w}}/p.npy --input {{w}}/in.jsonl --output {{w}}/ro/o.jsonl --task {TASK} {M}",
      r"/ro\b", read_only="ro"),
    R("predict/prompt-and-library",
      f"predict --prompt {{w}}/p.npy {LIB} --input {{w}}/in.jsonl {M}", r"--prompt or --library"),
    # convert
    R("convert/missing", "convert {w}/nomodel {w}/out/conv", r"nomodel"),
    R("convert/src-is-file", "convert {w}/p.npy {w}/out/conv", r"p\.npy"),
    R("convert/out-exists", "convert {w}/model {w}/out", r"out.*--overwrite"),
    # In place is a supported conversion (e.g. --dtype bfloat16), but only with --overwrite.
    R("convert/same-folder", "convert {w}/model {w}/model", r"model: already exists.*--overwrite"),
    R("convert/config-json-wrong-type", "convert {w}/model {w}/out/conv --config-json {w}/notes.txt",
      r"notes\.txt"),
    R("convert/read-only", "convert {w}/model {w}/ro/conv", r"/ro\b", read_only="ro"),
    # backbone, demo, bench: refused before minutes of pretraining or benchmarking start
    R("backbone-build/set-negative", "backbone build --set span_steps=-1", r"span_steps"),
    R("backbone-build/set-nan", "backbone build --set learning_rate=nan", r"learning_rate"),
    R("backbone-build/set-zero", "backbone build --set batch_size=0", r"batch_size"),
    R("backbone-build/set-unknown", "backbone build --set bogus=1", r"bogus"),
    R("backbone-build/seed-negative", "backbone build --seed -1", r"--seed.*-1"),
    R("demo/source-steps-negative", "demo --source-steps -1 --out {w}/out/demo", r"source_steps.*-1"),
    R("demo/target-steps-zero", "demo --target-steps 0 --out {w}/out/demo", r"target_steps.*0"),
    R("demo/k-zero", "demo --k 0 --out {w}/out/demo", r"\bk\b.*0"),
    R("demo/out-is-file", "demo --out {w}/notes.txt", r"notes\.txt"),
    R("bench-retrieval/entries-negative", "bench retrieval --entries -1", r"entries.*-1"),
    R("bench-retrieval/k-zero", "bench retrieval --entries 4 --k 0", r"\bk\b.*\b0\b"),
    R("bench-decode/steps-zero", "bench decode --model test_tiny --random-weights --steps 0",
      r"steps.*0"),
    R("bench-decode/batch-negative", "bench decode --model test_tiny --random-weights --batch -1",
      r"batch.*-1"),
    R("bench-train-step/steps-negative",
      "bench train-step --model test_tiny --random-weights --steps -1", r"steps.*-1"),
    R("bench-predict/tasks-zero", "bench predict --model test_tiny --random-weights --tasks 0",
      r"tasks.*0"),
    R("bench-pipeline/steps-negative", "bench pipeline --steps -1 --vocab {w}/model/vocab.model",
      r"steps.*-1"),
]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> tuple[Path, str]:
    """Inputs the rows point at: prompts (good, NaN, empty), a library with tasks a, b, c,
    results CSVs, JSONL files, an output folder with existing outputs, a tiny model."""
    from spot.data.offline.vocab import default_vocabulary_path
    from spot.library.store import PromptLibrary
    from spot.model.checkpoints import save_native
    from spot.model.t5 import T5Config, init_params

    w = tmp_path_factory.mktemp("world")
    rng = np.random.default_rng(0)
    for name in ("p", "e"):
        np.save(w / f"{name}.npy", rng.normal(size=(4, 16)).astype(np.float32))
    nan = rng.normal(size=(4, 16)).astype(np.float32)
    nan[1, 2] = np.nan
    np.save(w / "nan.npy", nan)
    for name in ("empty.npy", "empty.csv", "empty.jsonl"):
        (w / name).write_bytes(b"")
    (w / "notes.txt").write_text("not a prompt, a table or a task\n")
    (w / "binary.jsonl").write_bytes(b'{"inputs": "a", "targets": "b"}\xff\xfe\n')
    (w / "emptydir").mkdir()
    header = "source,target,seed,score\n"
    (w / "results.csv").write_text(header + "none,b,0,50\na,b,0,60\nc,b,0,55\n")
    (w / "nan.csv").write_text(header + "none,b,0,50\na,b,0,nan\n")
    (w / "big.csv").write_text(header + "none,b,0,50\na,b,0,160\n")
    (w / "in.jsonl").write_text('{"inputs": "review: a fine film"}\n')
    (w / "out").mkdir()
    np.save(w / "out" / "existing.npy", np.ones((4, 16), np.float32))
    (w / "out" / "existing.jsonl").write_text('{"line": 1, "prediction": "old"}\n')
    (w / "ro").mkdir()
    (w / "ro" / "kept.txt").write_text("an existing output\n")
    with PromptLibrary(w / "lib", create=True) as lib:
        ids = [lib.add(task=t, prompt=rng.normal(size=(4, 16)).astype(np.float32),
                       embedding=rng.normal(size=(4, 16)).astype(np.float32), model="tiny").id
               for t in ("a", "b", "c")]
    cfg = T5Config.preset("test_tiny", vocab_size=8192)
    save_native(w / "model", cfg, init_params(cfg, 0))
    shutil.copyfile(default_vocabulary_path(), w / "model" / "vocab.model")
    return w, ids[0]


def _row_params():
    for row in ROWS:
        yield pytest.param(row, id=row.id)


def _cannot_make_unwritable() -> None:
    """Outside the project: an unwritable folder needs a non-root user or `chattr +i` on a
    file system that supports it. CI (root, ext4) has it, so there its absence fails."""
    reason = "cannot make a folder unwritable here (not root-proof: no chattr +i)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.mark.parametrize("row", list(_row_params()))
def test_bad_input(row: Row, world, tmp_path, monkeypatch):
    src, entry_a = world
    w = tmp_path / "w"
    shutil.copytree(src, w, symlinks=True)
    monkeypatch.chdir(tmp_path)  # nothing lands in the checkout
    args = [a.replace("{w}", str(w)).replace("{a}", entry_a) for a in row.args]
    before = snapshot(w)
    if row.read_only:
        with read_only(w / row.read_only) as unwritable:
            if not unwritable:
                _cannot_make_unwritable()
            outcome = run_spot(args, env={"SPOT_LIBRARY": str(w / "nolib")})
    else:
        outcome = run_spot(args, env={"SPOT_LIBRARY": str(w / "nolib")})
    after = snapshot(w)

    assert outcome.exception is None, "a traceback reached the user:\n" + "".join(
        traceback.format_exception(outcome.exception))
    assert "Traceback" not in outcome.stderr, outcome.stderr
    assert outcome.code == 2, (outcome.code, outcome.stdout[-2000:], outcome.stderr[-2000:])
    lines = outcome.error_lines()
    assert len(lines) == 1, outcome.stderr
    assert re.search(row.expect, lines[0]), (row.expect, lines[0])
    assert not changes(before, after), changes(before, after)


ENTRY_ROWS = ["predict/output-is-input", "study-summarize/json-is-results",
              "train-source/lr-nan", "library-add/read-only"]


@pytest.mark.parametrize("row_id", ENTRY_ROWS)
def test_console_entry_prints_no_traceback(row_id, world, tmp_path):
    """The real `spot` entry point in a child process: status 2, one error line, no traceback."""
    row = next(r for r in ROWS if r.id == row_id)
    src, entry_a = world
    w = tmp_path / "w"
    shutil.copytree(src, w, symlinks=True)
    args = [a.replace("{w}", str(w)).replace("{a}", entry_a) for a in row.args]
    before = snapshot(w)
    with read_only(w / row.read_only) if row.read_only else _nothing() as unwritable:
        if unwritable is False:
            _cannot_make_unwritable()
        proc = spot_subprocess(args)
    assert proc.returncode == 2, (proc.stdout[-2000:], proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [x for x in proc.stderr.splitlines() if x.startswith(("error:", "Error:"))]
    assert len(lines) == 1 and re.search(row.expect, lines[0]), proc.stderr
    assert not changes(before, snapshot(w))


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False
