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
What an entry may hold is checked in `spot.library.entry`; prompt files come in and go out
through `spot.library.import_export`.

SQLite keeps `index.sqlite-wal` and `-shm` beside the index while any connection is open
(concurrent readers and writers need them) and removes them when the last one closes, so
every use of a library should end with `close()` (or a `with` block).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import re
import secrets
import sqlite3
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from spot.errors import ConfigError, LibraryError, PromptError
from spot.fileio import atomic_write_bytes, atomic_write_text, confined_path
from spot.library import import_export, ranking
from spot.library.entry import Entry, check_item
from spot.library.import_export import read_prompt_file
from spot.retrieval import similarity as sim

FORMAT_NAME = "spot-prompt-library"
FORMAT_VERSION = 1
_MANIFEST = "library.json"
_INDEX = "index.sqlite"
_ARRAYS = "arrays"
_MIN_PREFIX = 4  # shortest id prefix `get` accepts, so a typo cannot pick an entry
_ID_RE = re.compile(r"^[0-9a-f]{16}$")
_BUSY_TIMEOUT_MS = 120_000
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


def _entry_from_row(row: Sequence[Any]) -> Entry:
    (_seq, id_, task, run, model, step, kind, metrics, metadata, created,
     prompt_shape, dtype, key_shape, _width) = row
    return Entry(id=id_, task=task, run=run, model=model, step=step, kind=kind,
                 metrics=json.loads(metrics), metadata=json.loads(metadata), created=created,
                 prompt_shape=tuple(json.loads(prompt_shape)), key_shape=tuple(json.loads(key_shape)),
                 dtype=dtype)


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


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
        checked = check_item(item)
        row = {
            "id": secrets.token_hex(8), "task": checked.task, "run": checked.run, "model": checked.model,
            "step": checked.step, "kind": checked.kind, "metrics": checked.metrics_json,
            "metadata": checked.metadata_json, "prompt_shape": json.dumps(list(checked.prompt.shape)),
            "prompt_dtype": str(checked.prompt.dtype), "key_shape": json.dumps(list(checked.key.shape)),
            "width": int(checked.key.shape[1]), "_key_mean": checked.summary.mean.tobytes(),
            "_key_unit_mean": checked.summary.unit_mean.tobytes(),
        }
        written = []
        try:
            key = checked.key if checked.kind == "embedding" else None
            for which, arr in (("prompt", checked.prompt), ("key", key)):
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
        """Add prompt files; see `spot.library.import_export.import_prompts`."""
        return import_export.import_prompts(self, paths, task=task, model=model, **add_kwargs)

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
        """Write the entry's prompt (or key embedding) outside the library, with a `.json`
        sidecar; see `spot.library.import_export.export`."""
        return import_export.export(self, entry, out, which=which)

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

    def width_groups(self) -> dict[int, ranking.WidthGroup]:
        """The screening copies of all entries by key width, refreshed first."""
        self.refresh()
        return self._groups

    def summaries(self, seqs: Sequence[int]) -> dict[int, sim.Summary]:
        """The stored float64 summaries of these rows (removed rows are absent)."""
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

    def entries_by_seq(self, seqs: Sequence[int]) -> dict[int, Entry]:
        """The entries of these rows (removed rows are absent)."""
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
        O(entries x L^2 x E). The method lives in `spot.library.ranking.rank`.
        """
        return ranking.rank(self, embedding, metric=metric, k=k, by=by, model=model)


def open_library(root: str | os.PathLike | None = None, *, create: bool = True) -> PromptLibrary:
    """The library at `root`, else `$SPOT_LIBRARY`, else `./spot_library`."""
    return PromptLibrary(root or os.environ.get("SPOT_LIBRARY") or "spot_library", create=create)


__all__ = ["Entry", "PromptLibrary", "open_library", "read_prompt_file", "FORMAT_VERSION"]
