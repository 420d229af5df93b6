"""The prompt library: source prompts (values) keyed by task embeddings, on disk.

Layout under the root folder::

    library.json                 {"format": "spot-prompt-library", "format_version": 1}
    index.sqlite                 one row per entry (SQLite, WAL mode)
    arrays/<id[:2]>/<id>.prompt.npy
    arrays/<id[:2]>/<id>.key.npy     only when a separate embedding was given

Writers save the arrays atomically first and insert the row last, in one transaction, so an
entry exists exactly when its row does: several processes can add at once, and a writer
killed mid-add leaves at most orphaned array files that readers ignore (`cleanup` deletes
them). Entry ids and file names are generated here; user strings (task, run, model) are
only ever stored as data, never used as paths.

Each row also holds the float64 summaries of its key (mean token and mean unit-normalized
token) so the cheap similarity metrics never reload the arrays; see `spot.library.ranking`.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import io
import json
import math
import os
import re
import secrets
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from spot.errors import ConfigError, LibraryError, PromptError
from spot.fileio import atomic_write_bytes, atomic_write_text, confined_path
from spot.library import ranking
from spot.retrieval import similarity as sim

FORMAT_NAME = "spot-prompt-library"
FORMAT_VERSION = 1
_MANIFEST = "library.json"
_INDEX = "index.sqlite"
_ARRAYS = "arrays"
_MIN_PREFIX = 4  # shortest id prefix `get` accepts, so a typo cannot pick an entry
_ID_RE = re.compile(r"^[0-9a-f]{16}$")
_BUSY_TIMEOUT_MS = 120_000
_KINDS = ("prompt", "embedding")
_FETCH_CHUNK = 500

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    task TEXT NOT NULL,
    run TEXT NOT NULL,
    model TEXT NOT NULL,
    step INTEGER,
    kind TEXT NOT NULL,
    metrics TEXT NOT NULL,
    metadata TEXT NOT NULL,
    created REAL NOT NULL,
    prompt_shape TEXT NOT NULL,
    prompt_dtype TEXT NOT NULL,
    prompt_sha256 TEXT NOT NULL,
    key_shape TEXT NOT NULL,
    key_sha256 TEXT NOT NULL,
    width INTEGER NOT NULL,
    UNIQUE (task, model, run)
);
CREATE INDEX IF NOT EXISTS entries_task ON entries (task);
CREATE INDEX IF NOT EXISTS entries_model_width ON entries (model, width);
CREATE TABLE IF NOT EXISTS summaries (
    seq INTEGER PRIMARY KEY,
    key_mean BLOB NOT NULL,
    key_unit_mean BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT OR IGNORE INTO meta (key, value) VALUES ('format_version', '1');
INSERT OR IGNORE INTO meta (key, value) VALUES ('removals', '0');
"""

_ENTRY_COLUMNS = ("seq, id, task, run, model, step, kind, metrics, metadata, created, "
                  "prompt_shape, prompt_dtype, key_shape, width")


@dataclass(frozen=True)
class Entry:
    """One library entry. `kind` is "embedding" when a separate early-checkpoint embedding
    is the key, "prompt" when the prompt itself serves as its own key."""

    id: str
    task: str
    run: str
    model: str
    step: int | None
    kind: str
    metrics: dict = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)
    created: float = 0.0
    prompt_shape: tuple[int, int] = (0, 0)
    key_shape: tuple[int, int] = (0, 0)
    dtype: str = "float32"

    @property
    def width(self) -> int:
        return self.key_shape[1]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "task": self.task, "run": self.run, "model": self.model,
            "step": self.step, "kind": self.kind, "metrics": dict(self.metrics),
            "metadata": dict(self.metadata), "created": self.created,
            "created_utc": _dt.datetime.fromtimestamp(self.created, _dt.timezone.utc).isoformat(timespec="seconds"),
            "prompt_shape": list(self.prompt_shape), "key_shape": list(self.key_shape), "dtype": self.dtype,
        }


def _entry_from_row(row: Sequence[Any]) -> Entry:
    (_seq, id_, task, run, model, step, kind, metrics, metadata, created,
     prompt_shape, dtype, key_shape, _width) = row
    return Entry(id=id_, task=task, run=run, model=model, step=step, kind=kind,
                 metrics=json.loads(metrics), metadata=json.loads(metadata), created=created,
                 prompt_shape=tuple(json.loads(prompt_shape)), key_shape=tuple(json.loads(key_shape)),
                 dtype=dtype)


def _check_label(value: object, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{what} must be a non-empty string, got {value!r}")
    if len(value) > 256 or any(ord(c) < 32 for c in value):
        raise ConfigError(f"{what} {value!r} is too long or holds control characters")
    return value


def _storage_array(x: object, what: str) -> np.ndarray:
    """Validate a prompt/embedding and pick its on-disk dtype (float64 stays float64)."""
    checked = sim.as_embedding(x, what)  # shape, numbers, finiteness
    dtype = np.float64 if np.asarray(x).dtype == np.float64 else np.float32
    with np.errstate(over="ignore"):
        arr = np.ascontiguousarray(np.asarray(x), dtype=dtype)
    if dtype == np.float32 and not np.isfinite(arr).all():
        raise PromptError(f"{what} overflows float32 (largest magnitude {np.abs(checked).max():g})")
    return arr


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def _json_field(value: Mapping[str, Any] | None, what: str) -> str:
    if value is None:
        return "{}"
    if not isinstance(value, Mapping):
        raise ConfigError(f"{what} must be a mapping, got {type(value).__name__}")
    try:
        return json.dumps(dict(value), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{what} must be JSON-serializable with finite numbers: {e}") from None


def _check_metrics(metrics: Mapping[str, Any] | None) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, value in (metrics or {}).items():
        _check_label(name, "metric name")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"metric {name!r} must be a number, got {value!r}") from None
        if not math.isfinite(number):
            raise ConfigError(f"metric {name!r} is not finite: {value!r}")
        out[name] = number
    return out


def read_prompt_file(path: Path) -> np.ndarray:
    """A prompt from any layout `spot.load_prompt` reads (.npy, safetensors, PEFT, t5x)."""
    from spot.model.prompt_files import load_prompt

    return np.asarray(load_prompt(path))


_PROMPT_FOLDER_MARKERS = ("adapter_config.json", "checkpoint", "numpy_checkpoints",
                          "encoder.prompt.prompt.prompt")


class PromptLibrary:
    """A folder of prompts and task embeddings that several processes may add to at once."""

    def __init__(self, root: str | os.PathLike, *, create: bool = True) -> None:
        self.root = Path(root)
        manifest = self.root / _MANIFEST
        if not manifest.exists():
            if not create:
                raise LibraryError(f"{self.root} is not a prompt library (no {_MANIFEST})")
            self._create_manifest()
        self._check_manifest(manifest)
        self._conn = self._connect(create)
        self._loaded: tuple[int, str] | None = None
        self._groups: dict[int, ranking.WidthGroup] = {}

    # -- opening -----------------------------------------------------------------------

    def _create_manifest(self) -> None:
        if self.root.exists() and not self.root.is_dir():
            raise LibraryError(f"{self.root} exists and is not a folder")
        self.root.mkdir(parents=True, exist_ok=True)
        known = {_INDEX, _INDEX + "-wal", _INDEX + "-shm", _ARRAYS}
        strangers = [p.name for p in self.root.iterdir()
                     if p.name not in known and not p.name.startswith(f".{_MANIFEST}.")]
        if strangers:
            raise LibraryError(f"{self.root} is not empty and not a prompt library "
                               f"(found {sorted(strangers)[:3]}); pick an empty or new folder")
        atomic_write_text(self.root / _MANIFEST, json.dumps(
            {"format": FORMAT_NAME, "format_version": FORMAT_VERSION}, indent=2) + "\n")

    def _check_manifest(self, manifest: Path) -> None:
        try:
            info = json.loads(manifest.read_text(encoding="utf-8"))
            version = info["format_version"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise LibraryError(f"{manifest} is unreadable or lacks format_version: {e}") from None
        if info.get("format") != FORMAT_NAME:
            raise LibraryError(f"{manifest}: format is {info.get('format')!r}, not {FORMAT_NAME!r}")
        if not isinstance(version, int) or version < 1:
            raise LibraryError(f"{manifest}: invalid format_version {version!r}")
        if version > FORMAT_VERSION:
            raise LibraryError(f"{self.root} uses library format version {version}, newer than "
                               f"this spot reads ({FORMAT_VERSION}); upgrade spot to open it")

    def _connect(self, create: bool) -> sqlite3.Connection:
        path = self.root / _INDEX
        if not path.exists() and not create:
            raise LibraryError(f"{self.root} has no {_INDEX}")
        try:
            conn = sqlite3.connect(path, timeout=_BUSY_TIMEOUT_MS / 1000, isolation_level=None)
            conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            with self._write(conn):
                for statement in _SCHEMA.strip().split(";"):
                    if statement.strip():
                        conn.execute(statement)
            version = int(conn.execute("SELECT value FROM meta WHERE key = 'format_version'").fetchone()[0])
        except sqlite3.DatabaseError as e:
            raise LibraryError(f"{path} is not a usable SQLite index: {e}") from None
        if version > FORMAT_VERSION:
            raise LibraryError(f"{path} has index format version {version}, newer than this spot "
                               f"reads ({FORMAT_VERSION}); upgrade spot to open it")
        return conn

    @staticmethod
    @contextlib.contextmanager
    def _write(conn: sqlite3.Connection) -> Iterator[None]:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> "PromptLibrary":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"PromptLibrary({str(self.root)!r})"

    def __len__(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM entries").fetchone()[0])

    # -- paths and arrays --------------------------------------------------------------

    def _array_path(self, entry_id: str, which: str) -> Path:
        if not _ID_RE.match(entry_id):
            raise LibraryError(f"invalid entry id {entry_id!r} in {self.root}")
        return confined_path(self.root, _ARRAYS, entry_id[:2], f"{entry_id}.{which}.npy")

    def _read_array(self, entry_id: str, which: str, sha256: str, shape: tuple[int, int]) -> np.ndarray:
        path = self._array_path(entry_id, which)
        try:
            data = path.read_bytes()
        except OSError as e:
            raise LibraryError(f"entry {entry_id}: cannot read {path}: {e}") from None
        if hashlib.sha256(data).hexdigest() != sha256:
            raise LibraryError(f"entry {entry_id}: {path} does not match its recorded checksum (corrupt)")
        arr = np.load(io.BytesIO(data), allow_pickle=False)
        if tuple(arr.shape) != tuple(shape):
            raise LibraryError(f"entry {entry_id}: {path} has shape {arr.shape}, expected {tuple(shape)}")
        return arr

    # -- adding ------------------------------------------------------------------------

    def add(self, *, task: str, prompt: np.ndarray, embedding: np.ndarray | None = None,
            run: str | int | None = None, model: str = "unspecified", step: int | None = None,
            metrics: Mapping[str, float] | None = None, **metadata: Any) -> Entry:
        """Store a prompt (the value) and optionally its task embedding (the key).

        Without `embedding` the prompt is its own key. `run` defaults to the next free
        integer among the task's runs for this model. Extra keywords become metadata
        (e.g. `source="glue"`, `seed=0`).
        """
        return self.add_many([dict(task=task, prompt=prompt, embedding=embedding, run=run, model=model,
                                   step=step, metrics=metrics, **metadata)])[0]

    def add_many(self, items: Iterable[Mapping[str, Any]], *, batch: int = 1000) -> list[Entry]:
        """Bulk `add`: each item holds `add`'s keywords; rows are committed `batch` at a time."""
        entries: list[Entry] = []
        pending: list[dict[str, Any]] = []
        for item in items:
            pending.append(self._prepare(dict(item)))
            if len(pending) >= batch:
                entries += self._commit(pending)
                pending = []
        if pending:
            entries += self._commit(pending)
        return entries

    def _prepare(self, item: dict[str, Any]) -> dict[str, Any]:
        """Validate one item and write its arrays (atomically); the row comes later."""
        try:
            task = item.pop("task")
            prompt = item.pop("prompt")
        except KeyError as e:
            raise ConfigError(f"library add needs {e.args[0]}=") from None
        embedding = item.pop("embedding", None)
        run = item.pop("run", None)
        model = item.pop("model", "unspecified")
        step = item.pop("step", None)
        metrics = _check_metrics(item.pop("metrics", None))
        _check_label(task, "task")
        _check_label(model, "model")
        if run is not None:
            run = _check_label(str(run), "run")
        if step is not None and (isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0):
            raise ConfigError(f"step must be a non-negative integer, got {step!r}")
        prompt_arr = _storage_array(prompt, f"prompt for task {task!r}")
        key_arr = prompt_arr if embedding is None else _storage_array(embedding, f"embedding for task {task!r}")
        if key_arr.shape[1] != prompt_arr.shape[1]:
            raise PromptError(f"task {task!r}: embedding width {key_arr.shape[1]} differs from "
                              f"prompt width {prompt_arr.shape[1]}")
        summary = sim.summarize(key_arr, f"key for task {task!r}")
        if np.isnan(summary.unit_mean).any() or float(np.sum(summary.mean ** 2)) == 0.0:
            raise PromptError(f"task {task!r}: the key has a zero-norm token or a zero mean token, "
                              "so cosine similarities are undefined; it cannot be stored")
        row = {
            "id": secrets.token_hex(8), "task": task, "run": run, "model": model,
            "step": None if step is None else int(step), "kind": _KINDS[embedding is not None],
            "metrics": json.dumps(metrics, sort_keys=True), "metadata": _json_field(item, "metadata"),
            "prompt_shape": json.dumps(list(prompt_arr.shape)), "prompt_dtype": str(prompt_arr.dtype),
            "key_shape": json.dumps(list(key_arr.shape)), "width": int(key_arr.shape[1]),
            "_key_mean": summary.mean.tobytes(), "_key_unit_mean": summary.unit_mean.tobytes(),
        }
        written = []
        try:
            for which, arr in (("prompt", prompt_arr), ("key", None if embedding is None else key_arr)):
                if arr is None:
                    row["key_sha256"] = row["prompt_sha256"]
                    continue
                data = _npy_bytes(arr)
                row[f"{which}_sha256"] = hashlib.sha256(data).hexdigest()
                path = self._array_path(row["id"], which)
                atomic_write_bytes(path, data)
                written.append(path)
        except BaseException:
            self._unlink(written)
            raise
        row["_files"] = written
        return row

    @staticmethod
    def _unlink(paths: Iterable[Path]) -> None:
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def _commit(self, rows: list[dict[str, Any]]) -> list[Entry]:
        files = [p for row in rows for p in row["_files"]]
        try:
            with self._write(self._conn):
                self._check_widths(rows)
                for row in rows:
                    if row["run"] is None:
                        row["run"] = self._next_run(row["task"], row["model"])
                    row["created"] = time.time()
                    columns = [c for c in row if not c.startswith("_")]
                    try:
                        cur = self._conn.execute(
                            f"INSERT INTO entries ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                            [row[c] for c in columns])
                    except sqlite3.IntegrityError:
                        raise LibraryError(f"{self.root} already holds task {row['task']!r} run {row['run']!r} "
                                           f"for model {row['model']!r}; pick another --run") from None
                    self._conn.execute("INSERT INTO summaries (seq, key_mean, key_unit_mean) VALUES (?, ?, ?)",
                                       (cur.lastrowid, row["_key_mean"], row["_key_unit_mean"]))
        except BaseException:
            self._unlink(files)
            raise
        return [self._row_entry(row) for row in rows]

    def _row_entry(self, row: Mapping[str, Any]) -> Entry:
        return _entry_from_row([None] + [row[c.strip()] for c in _ENTRY_COLUMNS.split(",")[1:]])

    def _check_widths(self, rows: list[dict[str, Any]]) -> None:
        seen: dict[str, int] = {}
        for model, width in self._conn.execute("SELECT model, MIN(width) FROM entries GROUP BY model"):
            seen[model] = width
        for row in rows:
            width = seen.setdefault(row["model"], row["width"])
            if width != row["width"]:
                raise PromptError(f"task {row['task']!r}: width {row['width']} does not match the "
                                  f"width {width} of model {row['model']!r} already in {self.root}")

    def _next_run(self, task: str, model: str) -> str:
        used = {r for (r,) in self._conn.execute("SELECT run FROM entries WHERE task = ? AND model = ?",
                                                  (task, model))}
        n = 0
        while str(n) in used:
            n += 1
        return str(n)

    def import_prompts(self, paths: str | os.PathLike | Iterable[str | os.PathLike], task: str | None = None,
                       model: str | None = None, **add_kwargs: Any) -> list[Entry]:
        """Add prompt files (.npy, safetensors, ...; folders are expanded, not recursively).

        The task is the file stem unless `task` is given. Without `model`, a parent folder
        named `prompts_<model>` (as in the prompt-tuning release) names the model.
        """
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        files: list[Path] = []
        for p in map(Path, paths):
            if p.is_dir() and any((p / marker).exists() for marker in _PROMPT_FOLDER_MARKERS):
                files.append(p)  # one prompt stored as a folder (PEFT adapter, t5x checkpoint)
            elif p.is_dir():
                found = sorted(q for q in p.iterdir() if q.is_file() and q.suffix in (".npy", ".safetensors"))
                if not found:
                    raise PromptError(f"{p} holds no .npy or .safetensors prompt files")
                files += found
            elif p.exists():
                files.append(p)
            else:
                raise PromptError(f"{p} does not exist")
        items = []
        for f in files:
            file_model = model
            if file_model is None:
                parent = f.resolve().parent.name
                file_model = parent[len("prompts_"):] if parent.startswith("prompts_") and len(parent) > 8 \
                    else "unspecified"
            default_task = f.name if f.is_dir() else f.stem
            items.append(dict(add_kwargs, task=task or default_task, prompt=read_prompt_file(f),
                              model=file_model, source_file=f.name))
        return self.add_many(items)

    # -- reading -----------------------------------------------------------------------

    def entries(self, task: str | None = None, model: str | None = None) -> list[Entry]:
        """All entries in insertion order, optionally only one task and/or model."""
        sql, args = f"SELECT {_ENTRY_COLUMNS} FROM entries", []
        conds = []
        if task is not None:
            conds.append("task = ?")
            args.append(task)
        if model is not None:
            conds.append("model = ?")
            args.append(model)
        if conds:
            sql += " WHERE " + " AND ".join(conds)
        return [_entry_from_row(r) for r in self._conn.execute(sql + " ORDER BY seq", args)]

    def tasks(self) -> list[str]:
        return [t for (t,) in self._conn.execute("SELECT DISTINCT task FROM entries ORDER BY task")]

    def get(self, entry: Entry | str) -> Entry:
        """Look up an entry by id (a unique prefix of at least 4 characters also works).

        An ambiguous or too short prefix is refused with the entries it matches listed.
        """
        entry_id = entry.id if isinstance(entry, Entry) else str(entry).lower()
        if not re.fullmatch(r"[0-9a-f]{1,16}", entry_id):
            raise LibraryError(f"no entry {entry_id!r} in {self.root} (ids are 16 hex characters)")
        shown = 10
        rows = self._conn.execute(f"SELECT {_ENTRY_COLUMNS} FROM entries WHERE id >= ? AND id < ? "
                                  f"ORDER BY id LIMIT {shown + 1}", (entry_id, entry_id + "g")).fetchall()
        if len(entry_id) == 16:
            rows = [r for r in rows if r[1] == entry_id]
        if not rows:
            raise LibraryError(f"no entry {entry_id!r} in {self.root}")
        if len(rows) == 1 and len(entry_id) >= _MIN_PREFIX:
            return _entry_from_row(rows[0])
        found = [_entry_from_row(r) for r in rows[:shown]]
        listed = ", ".join(f"{e.id} ({e.task} run {e.run})" for e in found)
        if len(rows) > shown:
            listed += ", ..."
        if len(rows) == 1:
            raise LibraryError(f"entry id prefix {entry_id!r} is too short: give at least "
                               f"{_MIN_PREFIX} characters (it matches {listed})")
        raise LibraryError(f"ambiguous entry id {entry_id!r} in {self.root}: it matches {listed}")

    def _hashes(self, entry_id: str) -> tuple[str, str]:
        row = self._conn.execute("SELECT prompt_sha256, key_sha256 FROM entries WHERE id = ?", (entry_id,)).fetchone()
        if row is None:
            raise LibraryError(f"entry {entry_id} was removed from {self.root}")
        return row

    def load_prompt(self, entry: Entry | str) -> np.ndarray:
        e = self.get(entry)
        return self._read_array(e.id, "prompt", self._hashes(e.id)[0], e.prompt_shape)

    def load_embedding(self, entry: Entry | str) -> np.ndarray:
        """The entry's key: its embedding, or its prompt when it was added without one."""
        e = self.get(entry)
        which = "key" if e.kind == "embedding" else "prompt"
        return self._read_array(e.id, which, self._hashes(e.id)[1], e.key_shape)

    def remove(self, entry: Entry | str) -> None:
        e = self.get(entry)
        with self._write(self._conn):
            self._conn.execute("DELETE FROM summaries WHERE seq = (SELECT seq FROM entries WHERE id = ?)", (e.id,))
            self._conn.execute("DELETE FROM entries WHERE id = ?", (e.id,))
            self._conn.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'removals'")
        self._unlink([self._array_path(e.id, "prompt"), self._array_path(e.id, "key")])

    def export(self, entry: Entry | str, out: str | os.PathLike, which: str = "prompt") -> Path:
        """Write the entry's prompt (or key embedding) with `spot.save_prompt`: float32 `.npy` or
        `.safetensors`, plus a `<out>.json` sidecar recording where it came from."""
        from spot.model.prompt_files import save_prompt

        if which not in ("prompt", "embedding"):
            raise ConfigError(f"which must be 'prompt' or 'embedding', got {which!r}")
        out_real = Path(os.path.realpath(out))
        root_real = self.root.resolve()
        if out_real == root_real or root_real in out_real.parents:
            raise LibraryError(f"{out} is inside the library {self.root}; export outside it")
        e = self.get(entry)
        arr = self.load_prompt(e) if which == "prompt" else self.load_embedding(e)
        return save_prompt(out, arr, metadata={"library": str(self.root), "which": which, **e.to_dict()})

    def cleanup(self, min_age_s: float = 3600.0) -> list[Path]:
        """Delete array files no row refers to (left by crashed writers), if older than `min_age_s`.

        The age guard keeps files of adds still in flight in other processes.
        """
        if not math.isfinite(min_age_s) or min_age_s < 0:
            raise ConfigError(f"min_age_s must be a number of seconds >= 0, got {min_age_s}")
        known = {i for (i,) in self._conn.execute("SELECT id FROM entries")}
        removed = []
        now = time.time()
        base = self.root / _ARRAYS
        if not base.is_dir():
            return removed
        for path in base.glob("*/*"):
            name = path.name.lstrip(".")
            if name.split(".")[0] in known and not path.name.startswith("."):
                continue
            with contextlib.suppress(FileNotFoundError):
                if now - path.stat().st_mtime >= min_age_s:
                    path.unlink()
                    removed.append(path)
        return removed

    # -- ranking -----------------------------------------------------------------------

    def refresh(self) -> None:
        """Bring the in-memory summary matrices up to date with the index (cheap when current)."""
        max_seq, removals = self._conn.execute(
            "SELECT (SELECT COALESCE(MAX(seq), 0) FROM entries), "
            "(SELECT value FROM meta WHERE key = 'removals')").fetchone()
        state = (int(max_seq), str(removals))
        if self._loaded == state:
            return
        after = 0
        if self._loaded is None or self._loaded[1] != state[1]:
            self._groups = {}
        else:
            after = self._loaded[0]
        cur = self._conn.execute(
            "SELECT e.seq, e.id, e.task, e.model, e.width, s.key_mean, s.key_unit_mean "
            "FROM entries e JOIN summaries s ON s.seq = e.seq "
            "WHERE e.seq > ? AND e.seq <= ? ORDER BY e.seq", (after, state[0]))
        while True:
            rows = cur.fetchmany(4096)
            if not rows:
                break
            by_width: dict[int, list] = {}
            for row in rows:
                by_width.setdefault(row[4], []).append(row)
            for width, group_rows in by_width.items():
                group = self._groups.setdefault(width, ranking.WidthGroup(width))
                group.append(
                    np.array([r[0] for r in group_rows], np.int64), [r[1] for r in group_rows],
                    [r[2] for r in group_rows], [r[3] for r in group_rows],
                    np.frombuffer(b"".join(r[5] for r in group_rows), np.float64).reshape(-1, width),
                    np.frombuffer(b"".join(r[6] for r in group_rows), np.float64).reshape(-1, width))
        self._loaded = state

    def _summaries(self, seqs: Sequence[int], width: int) -> dict[int, sim.Summary]:
        out = {}
        seqs = [int(s) for s in seqs]
        for start in range(0, len(seqs), _FETCH_CHUNK):
            chunk = seqs[start:start + _FETCH_CHUNK]
            for seq, mean, unit, shape in self._conn.execute(
                    f"SELECT s.seq, s.key_mean, s.key_unit_mean, e.key_shape FROM summaries s "
                    f"JOIN entries e ON e.seq = s.seq WHERE s.seq IN ({','.join('?' * len(chunk))})", chunk):
                out[seq] = sim.Summary(np.frombuffer(mean, np.float64), np.frombuffer(unit, np.float64),
                                       json.loads(shape)[0])
        return out

    def _entries_by_seq(self, seqs: Sequence[int]) -> dict[int, Entry]:
        out = {}
        seqs = [int(s) for s in seqs]
        for start in range(0, len(seqs), _FETCH_CHUNK):
            chunk = seqs[start:start + _FETCH_CHUNK]
            for row in self._conn.execute(f"SELECT {_ENTRY_COLUMNS} FROM entries WHERE seq IN "
                                          f"({','.join('?' * len(chunk))})", chunk):
                out[row[0]] = _entry_from_row(row)
        return out

    def rank(self, embedding: np.ndarray | Sequence[np.ndarray], metric: str = "per_token_cosine",
             k: int | None = None, by: str = "entry", model: str | None = None
             ) -> list[tuple[Entry, float]] | list[tuple[str, float]]:
        """Entries (or tasks) most similar to `embedding`, best first, as (entry_or_task, score).

        `embedding` is one [L, E] array, or a list of runs of the query task (scores then
        average over all query-run x entry pairs). `by="task"` scores each task by the mean
        over all pairs of its runs and the query runs. Ties break by entry id / task name.
        Cheap metrics cost O(entries x E); the per-token distances load every key and cost
        O(entries x L^2 x E).
        """
        sim.check_metric(metric)
        if by not in ("entry", "task"):
            raise ConfigError(f"by must be 'entry' or 'task', got {by!r}")
        k = sim.check_k(k, allow_none=True)
        queries = _query_runs(embedding)
        q_summ = [sim.summarize(q, f"query embedding {i}") for i, q in enumerate(queries)]
        if len({q.width for q in q_summ}) > 1:
            raise PromptError(f"query runs have different widths: {sorted({q.width for q in q_summ})}")
        q_width = q_summ[0].width

        self.refresh()
        pools = {}
        for width, group in self._groups.items():
            rows = None if model is None else np.flatnonzero(group.models == model)
            size = len(group) if rows is None else len(rows)
            if size:
                pools[width] = rows
        others = sorted(w for w in pools if w != q_width)
        if others:
            where = f" for model {model!r}" if model is not None else ""
            raise PromptError(f"query width {q_width} does not match library width "
                              f"{', '.join(map(str, others))}{where} in {self.root}")
        if q_width not in pools:
            if k is None:
                return []
            where = f" for model {model!r}" if model is not None else ""
            raise ConfigError(f"k={k} but {self.root} holds no entries{where}")
        group, rows = self._groups[q_width], pools[q_width]
        seqs = group.seq if rows is None else group.seq[rows]
        ids = group.ids if rows is None else group.ids[rows]
        tasks = group.tasks if rows is None else group.tasks[rows]
        if by == "task":
            names, codes = np.unique(tasks.astype(str), return_inverse=True)
            n_items = len(names)
        else:
            n_items = len(seqs)
        if k is not None and k > n_items:
            raise ConfigError(f"k={k} is larger than the library: {n_items} "
                              f"{'tasks' if by == 'task' else 'entries'} to rank")

        # Narrow the pool stage by stage; `pos` indexes the pool, tasks always keep all their runs.
        pos = np.arange(len(seqs))
        for stage in ranking.stages(metric):
            if k is None:
                break
            rows_now = pos if rows is None else rows[pos]
            if rows is None and len(pos) == len(group):
                rows_now = None
            lo, hi = ranking.screen(group, rows_now, q_summ, metric, stage)
            if by == "task":
                _, local = np.unique(codes[pos], return_inverse=True)
                counts = np.bincount(local)
                picked = ranking.candidates(np.bincount(local, weights=lo) / counts,
                                            np.bincount(local, weights=hi) / counts, k)
                pos = pos[np.isin(local, picked)]
            else:
                pos = pos[ranking.candidates(lo, hi, k)]
        cand_pos = pos
        prep = self._exact_inputs(seqs[cand_pos], metric, q_width, ids[cand_pos])
        queries_prep = q_summ if metric in sim.SUMMARY_METRICS else \
            [sim.as_embedding(q, "query embedding") for q in queries]

        if by == "entry":
            scored = [(float(np.mean(sim.prepared_matrix(queries_prep, [prep[int(s)]], metric))), str(i), int(s))
                      for s, i in zip(seqs[cand_pos], ids[cand_pos])]
            scored.sort(key=lambda t: (-t[0], t[1]))
            top = scored[:k] if k is not None else scored
            found = self._entries_by_seq([s for _, _, s in top])
            return [(found[s], score) for score, _, s in top if s in found]
        runs: dict[str, list] = {}
        for p in cand_pos:  # insertion order within each task
            runs.setdefault(str(tasks[p]), []).append(prep[int(seqs[p])])
        scored_tasks = sorted(((float(np.mean(sim.prepared_matrix(queries_prep, task_runs, metric))), name)
                               for name, task_runs in runs.items()), key=lambda t: (-t[0], t[1]))
        top_tasks = scored_tasks[:k] if k is not None else scored_tasks
        return [(name, score) for score, name in top_tasks]

    def _exact_inputs(self, seqs: np.ndarray, metric: str, width: int, ids: np.ndarray) -> dict[int, Any]:
        if metric in sim.SUMMARY_METRICS:
            out = self._summaries(seqs, width)
            missing = [int(s) for s in seqs if int(s) not in out]
            if missing:
                raise LibraryError(f"{len(missing)} entries were removed from {self.root} during ranking; retry")
            return out
        return {int(s): sim.as_embedding(self.load_embedding(str(i)), f"key of entry {i}") for s, i in zip(seqs, ids)}


def open_library(root: str | os.PathLike | None = None, *, create: bool = True) -> PromptLibrary:
    """The library at `root`, else `$SPOT_LIBRARY`, else `./spot_library`."""
    return PromptLibrary(root or os.environ.get("SPOT_LIBRARY") or "spot_library", create=create)


def _query_runs(embedding: object) -> list[np.ndarray]:
    """One [L, E] query, or several runs of the query task (a list or an [R, L, E] array)."""
    if isinstance(embedding, (list, tuple)) and embedding and all(
            isinstance(q, np.ndarray) for q in embedding):
        return list(embedding)
    arr = np.asarray(embedding) if not isinstance(embedding, np.ndarray) else embedding
    if arr.ndim == 3:
        return list(arr)
    return [arr]


__all__ = ["Entry", "PromptLibrary", "open_library", "FORMAT_VERSION"]
