"""Rows of a JSONL, TSV or CSV file as string dicts, with errors that name the file and line
(the reader behind user task files and file-backed built-in tasks)."""

from __future__ import annotations

import csv
import io
import json
import os
import re
from pathlib import Path
from typing import Any, Iterator, Sequence

from spot.errors import DataError

DATA_EXTENSIONS = (".jsonl", ".tsv", ".csv")

_LINE_END = re.compile(r"\r\n|\r|\n")


def decode_lines(path: Path, data: bytes) -> list[str]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        # Only CR/LF end a line: str.splitlines would also split at U+2028, NEL and other
        # separators that valid JSON strings and CSV fields may hold.
        lines = _LINE_END.split(text)
        return lines[:-1] if lines[-1] == "" else lines
    for n, raw in enumerate(data.split(b"\n"), start=1):
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DataError(f"{path}:{n}: not valid UTF-8 text (byte {raw[e.start]:#04x} at "
                            f"column {e.start + 1}); save the file as UTF-8") from None
    raise DataError(f"{path}: not valid UTF-8 text")


def read_bytes(path: Path) -> bytes:
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if not path.is_file():
        raise DataError(f"{path}: not a file")
    try:
        return path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e.strerror}") from None


def _cell(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, (int, float)):
        return str(value)
    if value is None:
        return ""
    return json.dumps(value, ensure_ascii=False)


def read_table(path: str | os.PathLike, required: Sequence[str] = (),
               data: bytes | None = None) -> Iterator[dict[str, Any]]:
    """Rows of a JSONL/TSV/CSV file as dicts of strings plus `_line` (1-based line number).

    Raises a `DataError` naming the file and line for non-UTF-8 text, malformed JSON,
    ragged rows and missing `required` columns.
    """
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in DATA_EXTENSIONS:
        raise DataError(f"{path}: unsupported file type {ext or '(none)'}; use "
                        f"{', '.join(DATA_EXTENSIONS)} or a .toml spec")
    lines = decode_lines(path, read_bytes(path) if data is None else data)
    if lines and lines[0].startswith("\ufeff"):
        lines[0] = lines[0][1:]
    if ext == ".jsonl":
        yield from _jsonl_rows(path, lines, required)
    else:
        yield from _delimited_rows(path, lines, required, "\t" if ext == ".tsv" else ",")


def _jsonl_rows(path: Path, lines: list[str], required: Sequence[str]) -> Iterator[dict]:
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{n}: not valid JSON ({e.msg} at column {e.colno})") from None
        except (ValueError, RecursionError) as e:  # a number too long, nesting too deep
            raise DataError(f"{path}:{n}: not usable JSON ({e})") from None
        if not isinstance(obj, dict):
            raise DataError(f"{path}:{n}: expected a JSON object, found {type(obj).__name__}")
        missing = [c for c in required if c not in obj]
        if missing:
            raise DataError(f"{path}:{n}: missing field {', '.join(map(repr, missing))} "
                            f"(the line has {', '.join(map(repr, obj)) or 'no fields'})")
        row = {k: _cell(v) for k, v in obj.items()}
        row["_line"] = n
        yield row


def _delimited_rows(path: Path, lines: list[str], required: Sequence[str],
                    delimiter: str) -> Iterator[dict]:
    # csv needs the raw text to handle quoted newlines; track line numbers through it.
    reader = csv.reader(io.StringIO("\n".join(lines) + "\n"), delimiter=delimiter,
                        quoting=csv.QUOTE_MINIMAL if delimiter == "," else csv.QUOTE_NONE)
    try:
        header = next(reader)
    except StopIteration:
        raise DataError(f"{path}: empty file (expected a header line)") from None
    except csv.Error as e:
        raise DataError(f"{path}:1: malformed header: {e}") from None
    header = [h.strip() for h in header]
    missing = [c for c in required if c not in header]
    if missing:
        raise DataError(f"{path}:1: missing column {', '.join(map(repr, missing))} "
                        f"(the header has {', '.join(map(repr, header))})")
    dup = sorted({h for h in header if header.count(h) > 1})
    if dup:
        raise DataError(f"{path}:1: duplicate column {', '.join(map(repr, dup))}")
    while True:
        start = reader.line_num + 1
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise DataError(f"{path}:{start}: malformed row: {e}") from None
        if not fields or (len(fields) == 1 and not fields[0].strip()):
            continue
        if len(fields) != len(header):
            raise DataError(f"{path}:{start}: expected {len(header)} fields "
                            f"({', '.join(header)}), found {len(fields)}")
        row: dict[str, Any] = dict(zip(header, fields))
        row["_line"] = start
        yield row
