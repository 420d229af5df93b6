"""Property tests for the two readers of user files: task files (`spot.data.local`) and study
results CSVs (`spot.analysis.transfer.read_results`).

Whatever the bytes, a reader returns a clean result or raises a `SpotError` that names the
file (and the line, for a problem on a line); no other exception escapes. Well-formed rows
of any text come back exactly, with the line numbers an editor shows.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from spot.analysis.transfer import read_results
from spot.data.local import register_task_file
from spot.data.tables import read_table
from spot.errors import SpotError

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])

# Any text a user's data may hold, line and paragraph separators (U+2028, NEL) included;
# surrogates cannot be written as UTF-8.
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=30)
CLEAN = st.text(st.characters(exclude_categories=("Cs", "Cc", "Zl", "Zp")), max_size=20)
ENCODINGS = ("utf-8", "utf-8-sig", "utf-16", "latin-1", "cp1252", "shift_jis")
# Messages about the whole file rather than one of its lines.
WHOLE_FILE = re.compile(r"empty|no examples|no data rows|split 'train'|unsupported")


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _names_file_and_line(err: SpotError, path: Path) -> None:
    msg = str(err)
    assert str(path) in msg, msg
    if not WHOLE_FILE.search(msg):
        assert re.search(re.escape(str(path)) + r":\d+", msg), f"no line number: {msg}"


# ---------------------------------------------------------------------------------------
# Task files


@SETTINGS
@given(rows=st.lists(st.fixed_dictionaries({"inputs": TEXT, "targets": TEXT, "split": TEXT}),
                     min_size=1, max_size=8))
@example(rows=[{"inputs": "a\u2028b", "targets": "x\x85y", "split": "train"}])
def test_jsonl_rows_come_back_exactly(tmp_path, rows):
    path = _write(tmp_path, "t.jsonl", "\n".join(json.dumps(r, ensure_ascii=False)
                                                 for r in rows).encode() + b"\n")
    got = list(read_table(path, required=("inputs", "targets")))
    assert [{k: v for k, v in g.items() if k != "_line"} for g in got] == rows
    assert [g["_line"] for g in got] == list(range(1, len(rows) + 1))


@SETTINGS
@given(rows=st.lists(st.tuples(TEXT.filter(str.strip), TEXT.filter(str.strip), CLEAN),
                     min_size=1, max_size=8))
@example(rows=[("a\u2028b", "x\ny", "train")])
def test_csv_rows_come_back_exactly(tmp_path, rows):
    assume(all("\r" not in c for r in rows for c in r))  # csv writes a bare CR as is
    buf = io.StringIO(newline="")
    writer = csv.writer(buf)
    writer.writerow(["inputs", "targets", "split"])
    writer.writerows(rows)
    path = _write(tmp_path, "t.csv", buf.getvalue().encode())
    got = list(read_table(path, required=("inputs", "targets")))
    assert [(g["inputs"], g["targets"], g["split"]) for g in got] == rows


@SETTINGS
@given(data=st.binary(max_size=300), ext=st.sampled_from([".jsonl", ".csv", ".tsv"]))
@example(data=b'{"inputs": 1e999999, "targets": "a"}', ext=".jsonl")
@example(data=b'{"inputs": ' + b"1" * 5000 + b', "targets": "a"}', ext=".jsonl")
@example(data=b"[" * 100_000, ext=".jsonl")
@example(data=b'"' + b"x" * 200_000 + b'"\n', ext=".csv")
def test_task_file_random_bytes(tmp_path, data, ext):
    path = _write(tmp_path, "t" + ext, data)
    try:
        list(read_table(path, required=("inputs", "targets")))
    except SpotError as e:
        _names_file_and_line(e, path)
    try:
        register_task_file(path)
    except SpotError as e:
        _names_file_and_line(e, path)


@SETTINGS
@given(rows=st.lists(st.fixed_dictionaries({"inputs": CLEAN, "targets": CLEAN,
                                            "split": st.sampled_from(["train", "validation"])}),
                     min_size=1, max_size=6),
       encoding=st.sampled_from(ENCODINGS), ext=st.sampled_from([".jsonl", ".csv"]))
def test_task_file_other_encodings(tmp_path, rows, encoding, ext):
    if ext == ".jsonl":
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    else:
        buf = io.StringIO(newline="")
        csv.DictWriter(buf, fieldnames=["inputs", "targets", "split"]).writeheader()
        csv.DictWriter(buf, fieldnames=["inputs", "targets", "split"]).writerows(rows)
        text = buf.getvalue()
    try:
        data = text.encode(encoding)
    except UnicodeEncodeError:
        assume(False)
    path = _write(tmp_path, "enc" + ext, data)
    try:
        got = list(read_table(path, required=("inputs", "targets")))
    except SpotError as e:
        _names_file_and_line(e, path)
        return
    assert [(g["inputs"], g["targets"]) for g in got] == [(r["inputs"], r["targets"])
                                                         for r in rows]


@SETTINGS
@given(body=st.lists(st.lists(TEXT, min_size=0, max_size=5), max_size=6),
       header=st.lists(st.sampled_from(["inputs", "targets", "split", "id", "x", ""]),
                       min_size=1, max_size=5),
       ext=st.sampled_from([".csv", ".tsv"]))
def test_task_file_random_tables(tmp_path, body, header, ext):
    delimiter = "," if ext == ".csv" else "\t"
    text = "\n".join(delimiter.join(cells) for cells in [header, *body]) + "\n"
    path = _write(tmp_path, "tab" + ext, text.encode())
    try:
        register_task_file(path)
    except SpotError as e:
        _names_file_and_line(e, path)


# ---------------------------------------------------------------------------------------
# Results CSVs

SCORE = st.floats(min_value=0, max_value=100, allow_nan=False)


@SETTINGS
@given(rows=st.lists(st.tuples(TEXT.filter(lambda s: s.strip() and s.strip() != "none"),
                               TEXT.filter(lambda s: s.strip() and s.strip() != "none"),
                               st.integers(0, 10**6), SCORE),
                     min_size=1, max_size=8, unique_by=lambda r: (r[0].strip(), r[1].strip(), r[2])))
@example(rows=[("src\u2028x", "tgt\x85y", 0, 50.0)])
def test_results_rows_come_back_exactly(tmp_path, rows):
    assume(all("\r" not in r[0] + r[1] for r in rows))
    buf = io.StringIO(newline="")
    writer = csv.writer(buf)
    writer.writerow(["source", "target", "seed", "score"])
    writer.writerows(rows)
    path = _write(tmp_path, "results.csv", buf.getvalue().encode())
    got = read_results(path)
    assert [(r.source, r.target, r.seed, r.score) for r in got] == [
        (s.strip(), t.strip(), seed, float(repr(score))) for s, t, seed, score in rows]
    # Each row's number is the line it starts on, as an editor counts them.
    starts, line = [], 2
    for r in rows:
        starts.append(line)
        line += 1 + (r[0] + r[1]).count("\n")
    assert [r.line for r in got] == starts


@SETTINGS
@given(data=st.binary(max_size=300))
@example(data=b"source,target,seed,score\na,b,0," + b"9" * 5000 + b"\n")
@example(data=b"source,target,seed,score\na,b," + b"1" * 5000 + b",50\n")
@example(data=b"source,target,seed,score\na,b,0,\xff50\n")
@example(data=b'source,target,seed,score\n"' + b"x" * 200_000 + b'",b,0,1\n')
@example(data=b"source,target,seed,score\na,b,0,1\x00\n")
def test_results_random_bytes(tmp_path, data):
    path = _write(tmp_path, "results.csv", data)
    try:
        rows = read_results(path)
    except SpotError as e:
        _names_file_and_line(e, path)
        return
    assert all(math.isfinite(r.score) and -100 <= r.score <= 100 for r in rows)


CELL = st.one_of(TEXT, st.sampled_from(["none", "nan", "inf", "-inf", "1e400", "101", "-0",
                                        "0x10", "1_000", " 7 ", "", "NaN", "³", "٣"]))


@SETTINGS
@given(rows=st.lists(st.lists(CELL, min_size=0, max_size=6), max_size=8),
       encoding=st.sampled_from(ENCODINGS))
def test_results_random_cells_and_encodings(tmp_path, rows, encoding):
    buf = io.StringIO(newline="")
    writer = csv.writer(buf)
    writer.writerow(["source", "target", "seed", "score"])
    writer.writerows(rows)
    try:
        data = buf.getvalue().encode(encoding)
    except UnicodeEncodeError:
        assume(False)
    path = _write(tmp_path, "results.csv", data)
    try:
        got = read_results(path)
    except SpotError as e:
        _names_file_and_line(e, path)
        return
    assert all(math.isfinite(r.score) and -100 <= r.score <= 100 for r in got)


def test_a_bad_line_is_named(tmp_path):
    """The properties above accept a line number anywhere in the message; this pins one."""
    path = _write(tmp_path, "results.csv", b"source,target,seed,score\nnone,b,0,50\na,b,x,1\n")
    with pytest.raises(SpotError, match=re.escape(f"{path}:3: column 'seed'")):
        read_results(path)
