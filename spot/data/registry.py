"""One place to look up any task or mixture by name: TFDS tasks, local-file tasks, the
offline suite, user task files and mixtures.

Tasks are registered as *text* (a function producing `{"inputs", "targets"}` examples);
tokenization happens in `spot.data.pipeline` with whatever vocabulary the run uses, and
`spot.data.seqio_tasks` builds a seqio Task per vocabulary on demand. Importing this module
is cheap: the built-in catalogue is plain data and nothing touches TFDS until examples are
read.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import importlib
import threading
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from spot.data import mixtures as MX
from spot.data import scoring, sources
from spot.data.tables import read_table
from spot.data.tasks import FILE, FILE_TASKS, TFDS, TFDS_TASKS, FileTaskDef, TfdsTaskDef
from spot.errors import DataError

SOURCES = ("tfds", "file", "offline", "mixture")


@dataclasses.dataclass(frozen=True)
class TaskInfo:
    """What a task or mixture is; methods answer questions that may need its data."""

    name: str
    family: str
    is_mixture: bool
    members: tuple[str, ...]
    metrics: tuple[str, ...]
    label_words: tuple[str, ...] | None
    source: str
    description: str = ""
    splits: tuple[str, ...] = ("train", "validation")
    postprocessor: str = "strip"
    K: int | None = None  # mixtures: the default examples-proportional cap
    labels_note: str = ""  # where the label set came from, or why the task has none
    _backend: Any = dataclasses.field(default=None, compare=False, repr=False)

    def available(self) -> bool:
        """Whether the data are on this machine (no network, no TensorFlow import)."""
        if self.is_mixture:
            return all(get(m).available() for m in self.members)
        return bool(self._backend.available())

    def num_examples(self, split: str = "train") -> int | None:
        if self.is_mixture:
            sizes = [get(m).num_examples(split) for m in self.members]
            return None if any(s is None for s in sizes) else sum(sizes)  # type: ignore[misc]
        if split not in self.splits:
            return 0
        return self._backend.num_examples(split)

    def rates(self, K: int | None = None) -> dict[str, float]:
        """Each member's examples-proportional rate min(n_train, K) (unnormalised)."""
        K = int(K if K is not None else (self.K or MX.DEFAULT_K))
        out = {}
        for m in self.members:
            n = get(m).num_examples("train")
            if n is None:
                raise DataError(
                    f"{self.name}: the training-set size of {m} is unknown (its data are not "
                    f"on this machine: {get(m).location()}), so its mixing rate cannot be set")
            out[m] = MX.mixing_rate(n, K)
        return out

    def location(self) -> str:
        """Where the data come from (TFDS name, expected file, or generator)."""
        if self.is_mixture:
            return "mixture of " + ", ".join(self.members)
        return self._backend.location()

    def iter_examples(self, split: str, *, download: bool | None = None) -> Iterator[dict]:
        """The split's text examples, `{"inputs", "targets", ...}`, in a fixed order."""
        if self.is_mixture:
            raise DataError(f"{self.name} is a mixture; read its members one by one")
        if split not in self.splits:
            raise DataError(f"task {self.name} has no split {split!r} (it has "
                            f"{', '.join(self.splits)})")
        if download is None:
            download = sources.downloads_allowed()
        return self._backend.iter_examples(split, download)


# ---------------------------------------------------------------------------------------
# Backends: where a task's text examples come from.


class _TfdsBackend:
    def __init__(self, d: TfdsTaskDef):
        self.d = d

    def available(self) -> bool:
        return all(sources.is_prepared(n) for parts in self.d.parts.values() for n, _ in parts)

    def num_examples(self, split: str) -> int | None:
        total = 0
        for tfds_name, tfds_split in self.d.parts[split]:
            n = sources.prepared_num_examples(tfds_name, tfds_split)
            if n is None:
                return self._capped(split, self.d.num_examples.get(split))
            total += n
        return self._capped(split, total)

    def _capped(self, split: str, n: int | None) -> int | None:
        if n is None or self.d.cap is None or split != "train":
            return n
        return min(n, self.d.cap)

    def location(self) -> str:
        names = sorted({n for parts in self.d.parts.values() for n, _ in parts})
        return "TFDS " + ", ".join(names)

    def cache_identity(self, split: str) -> tuple | None:
        """What the split's examples depend on (for the on-disk token cache): the TFDS
        parts, the cap and each prepared dataset's info file stamp."""
        parts = self.d.parts.get(split, ())
        stamps = []
        for name, _ in parts:
            st = (sources.prepared_dir(name) / "dataset_info.json").stat()
            stamps.append((name, st.st_size, st.st_mtime_ns))
        return (parts, self.d.cap, tuple(stamps))

    def iter_examples(self, split: str, download: bool) -> Iterator[dict]:
        cap = self.d.cap if split == "train" else None
        read = 0
        for tfds_name, tfds_split in self.d.parts[split]:
            for raw in sources.iter_tfds(tfds_name, tfds_split, download=download,
                                         shuffle_files=cap is not None):
                yield from self.d.formatter(raw, split)
                read += 1
                if cap is not None and read >= cap:
                    return


def data_dir() -> Path:
    """Where tasks TFDS does not carry expect their files ($SPOT_DATA_DIR, ~/spot_data)."""
    import os

    return Path(os.environ.get("SPOT_DATA_DIR") or Path.home() / "spot_data")


class _FileBackend:
    """A built-in task whose data the user places as `<data dir>/<task>/<split>.<ext>`."""

    EXTENSIONS = (".jsonl", ".tsv", ".csv")

    def __init__(self, d: FileTaskDef):
        self.d = d
        self._counts: dict[tuple[str, float], int] = {}

    def path(self, split: str) -> Path | None:
        for ext in self.EXTENSIONS:
            p = data_dir() / self.d.name / f"{split}{ext}"
            if p.is_file():
                return p
        return None

    def available(self) -> bool:
        return all(self.path(s) is not None for s in self.d.splits)

    def num_examples(self, split: str) -> int | None:
        p = self.path(split)
        if p is None:
            return self.d.num_examples.get(split)
        key = (str(p), p.stat().st_mtime)
        if key not in self._counts:
            self._counts[key] = sum(1 for _ in self._rows(split, p))
        return self._counts[key]

    def location(self) -> str:
        return (f"{data_dir() / self.d.name}/{{{','.join(self.d.splits)}}}.jsonl|tsv|csv "
                f"with columns {', '.join(self.d.columns)}")

    def cache_identity(self, split: str) -> tuple | None:
        """The split's file, size and mtime (for the on-disk token cache)."""
        path = self.path(split)
        if path is None:
            return None
        st = path.stat()
        return (str(path.resolve()), st.st_size, st.st_mtime_ns)

    def _rows(self, split: str, path: Path) -> Iterator[dict]:
        yield from read_table(path, required=self.d.columns)

    def iter_examples(self, split: str, download: bool) -> Iterator[dict]:
        p = self.path(split)
        if p is None:
            raise DataError(f"task {self.d.name} reads local files: expected "
                            f"{self.location()} (see docs/tasks.md)")
        words = self.d.label_words
        for row in self._rows(split, p):
            try:
                examples = self.d.formatter(row, split)
            except (KeyError, ValueError, IndexError) as e:
                raise DataError(f"{p}:{row.get('_line', '?')}: cannot format the row for "
                                f"{self.d.name}: {type(e).__name__}: {e}") from None
            for ex in examples:
                if words is not None and ex["targets"] not in words:
                    raise DataError(f"{p}:{row['_line']}: label {row.get('label')!r} is not "
                                    f"one of {self.d.name}'s labels (see docs/tasks.md)")
                yield ex


class _TextBackend:
    """Examples produced by a Python function (the offline suite, user task files)."""

    def __init__(self, name: str, load_split: Callable[[str], list[dict[str, str]]],
                 sizes: Mapping[str, int] | None, location: str,
                 available: Callable[[], bool] | None, content_key: str | None = None):
        self.name = name
        self.content_key = content_key
        self.load_split = load_split
        self.sizes = dict(sizes) if sizes else None
        self._location = location
        self._available = available
        self._counts: dict[str, int] = {}

    def available(self) -> bool:
        return self._available() if self._available else True

    def num_examples(self, split: str) -> int | None:
        if self.sizes is not None and split in self.sizes:
            return int(self.sizes[split])
        if split not in self._counts:
            self._counts[split] = sum(1 for _ in self.iter_examples(split, False))
        return self._counts[split]

    def location(self) -> str:
        return self._location

    def cache_identity(self, split: str) -> tuple | None:
        """Set only when the registrant names its content (a user task file's digest);
        generated examples are not cached on disk."""
        return None if self.content_key is None else ("text", self.content_key)

    def iter_examples(self, split: str, download: bool) -> Iterator[dict]:
        rows = self.load_split(split)
        for i, ex in enumerate(rows):
            if (not isinstance(ex, Mapping) or not isinstance(ex.get("inputs"), str)
                    or not isinstance(ex.get("targets"), str)):
                raise DataError(f"task {self.name} split {split}: example {i} is not a dict "
                                f"with string 'inputs' and 'targets': {str(ex)[:120]}")
            yield dict(ex)


# ---------------------------------------------------------------------------------------
# The registry itself.

_LOCK = threading.RLock()
_ENTRIES: dict[str, TaskInfo] = {}
_FINGERPRINTS: dict[str, tuple] = {}
_BUILTINS_DONE = False
# Suites that register themselves when a name is not found (imported only then).
_LAZY_PROVIDERS = ["spot.data.offline.suite:register_offline_suite"]
_PROVIDERS_DONE: set[str] = set()


def _callable_key(fn: Any) -> tuple:
    """Identity of a loader for the 'same spec' test: module, name, bound arguments and
    simple captured values (so re-running a registration function is a no-op, but the same
    function over different data is a conflict)."""
    if isinstance(fn, functools.partial):
        return ("partial", _callable_key(fn.func), repr(fn.args), repr(sorted(fn.keywords.items())))
    cells = []
    for c in getattr(fn, "__closure__", None) or ():
        try:
            v = c.cell_contents
        except ValueError:
            continue
        simple = isinstance(v, (str, int, float, bool, bytes, Path, tuple, type(None)))
        cells.append(repr(v) if simple else type(v).__name__)
    owner = getattr(fn, "__self__", None)
    return (getattr(fn, "__module__", None), getattr(fn, "__qualname__", repr(type(fn))),
            tuple(cells), type(owner).__name__ if owner is not None else None)


def _add(info: TaskInfo, fingerprint: tuple) -> None:
    with _LOCK:
        old = _FINGERPRINTS.get(info.name)
        if old is not None:
            if old == fingerprint:
                return
            raise DataError(f"task or mixture {info.name!r} is already registered with a "
                            f"different definition ({_ENTRIES[info.name].location()})")
        _ENTRIES[info.name] = info
        _FINGERPRINTS[info.name] = fingerprint


def _check_name(name: str) -> None:
    if not name or not isinstance(name, str) or any(c.isspace() for c in name):
        raise DataError(f"invalid task name {name!r}: use a non-empty name without spaces")


def _metrics(name: str, metrics: Sequence[str]) -> tuple[str, ...]:
    if isinstance(metrics, str):
        metrics = (metrics,)
    try:
        return tuple(scoring.canonical_metric(m) for m in metrics)
    except DataError as e:
        raise DataError(f"task {name}: {e}") from None


@dataclasses.dataclass(frozen=True)
class TextTaskSpec:
    """A task whose examples are already text: `load_split(split)` returns dicts with
    `inputs` and `targets` (optionally `id` and metric fields such as `answers`).

    `label_words` declares a closed label set (rank classification at evaluation; the binary
    `f1` metric takes the second word as the positive class); `labels_note` says where the
    label set came from, or why there is none (shown by `spot tasks info`). Metric names are
    those of `spot.data.scoring.METRICS`. `content_key`, a digest of everything the examples
    depend on (files and spec), lets the pipeline cache their tokens on disk.
    """

    name: str
    family: str
    load_split: Callable[[str], list[dict[str, str]]]
    splits: Sequence[str] = ("train", "validation")
    metrics: Sequence[str] = ("accuracy",)
    label_words: Sequence[str] | None = None
    description: str = ""
    source: str = "offline"
    num_examples: Mapping[str, int] | None = None
    postprocessor: str | None = None
    available: Callable[[], bool] | None = None
    location: str | None = None
    content_key: str | None = None
    labels_note: str = ""


def register_text_task(spec: TextTaskSpec) -> None:
    """Register `spec`. Re-registering an identical spec is a no-op; a different spec under
    a taken name is a `DataError`."""
    name, source = spec.name, spec.source
    _check_name(name)
    if source not in SOURCES or source == "mixture":
        raise DataError(f"task {name}: source must be one of tfds, file, offline, not {source!r}")
    mets = _metrics(name, spec.metrics)
    words = tuple(spec.label_words) if spec.label_words is not None else None
    if words is not None and (not words or len(set(words)) != len(words)):
        raise DataError(f"task {name}: label_words must be distinct and non-empty: {words}")
    post = spec.postprocessor or scoring.default_postprocessor(mets)
    if post not in scoring.POSTPROCESSORS:
        raise DataError(f"task {name}: unknown postprocessor {post!r}")
    sizes = ({str(k): int(v) for k, v in spec.num_examples.items()} if spec.num_examples
             else None)
    backend = _TextBackend(name, spec.load_split, sizes,
                           spec.location or f"{source} task (generated)", spec.available,
                           spec.content_key)
    info = TaskInfo(
        name=name, family=spec.family, is_mixture=False, members=(name,), metrics=mets,
        label_words=words, source=source, description=spec.description,
        splits=tuple(spec.splits), postprocessor=post, labels_note=spec.labels_note,
        _backend=backend)
    fingerprint = ("text", spec.family, tuple(spec.splits), mets, words, spec.description,
                   source, tuple(sorted(sizes.items())) if sizes else None, post,
                   _callable_key(spec.load_split))
    _ensure_builtins()
    _add(info, fingerprint)


def _flatten(name: str, tasks: Sequence[str], stack: tuple[str, ...] = ()) -> tuple[str, ...]:
    out: dict[str, None] = {}
    for t in tasks:
        if t in stack:
            raise DataError(f"mixture {name} contains itself through {t}")
        info = get(t)
        members = _flatten(t, info.members, stack + (t,)) if info.is_mixture else (t,)
        for m in members:
            out.setdefault(m, None)
    return tuple(out)


def register_mixture(name: str, tasks: Sequence[str], *, K: int = MX.DEFAULT_K,
                     family: str = "mixture", description: str = "") -> None:
    """Register an examples-proportional mixture (nested mixtures are flattened)."""
    _check_name(name)
    if isinstance(tasks, str) or not tasks:
        raise DataError(f"mixture {name}: give a non-empty list of task names")
    if int(K) <= 0:
        raise DataError(f"mixture {name}: K must be positive, got {K}")
    _ensure_builtins()
    members = _flatten(name, tuple(tasks), (name,))
    info = TaskInfo(name=name, family=family, is_mixture=True, members=members, metrics=(),
                    label_words=None, source="mixture", description=description or
                    f"examples-proportional mixture of {len(members)} tasks (K={K})",
                    splits=("train", "validation"), K=int(K))
    _add(info, ("mixture", members, int(K), family))


ADHOC_PREFIX = "mix:"


def make_mixture(tasks: Sequence[str], *, K: int = MX.DEFAULT_K) -> str:
    """An ad-hoc mixture of `tasks` (e.g. the top-k sources plus the target); its name.

    The name spells out the members (`mix:a+b+c`, `@K=n` when K is not the default), so
    `get` can rebuild it in another process, e.g. when a run resumes.
    """
    if isinstance(tasks, str) or not tasks:
        raise DataError("make_mixture needs a non-empty list of task names")
    if any("+" in t or "@" in t for t in tasks):
        raise DataError(f"ad-hoc mixture members cannot contain '+' or '@': {list(tasks)}")
    name = ADHOC_PREFIX + "+".join(tasks) + ("" if int(K) == MX.DEFAULT_K else f"@K={int(K)}")
    register_mixture(name, tasks, K=K, family="ad-hoc")
    return name


def _adhoc_from_name(name: str) -> TaskInfo:
    body, _, k = name[len(ADHOC_PREFIX):].partition("@K=")
    try:
        K = int(k) if k else MX.DEFAULT_K
    except ValueError:
        raise DataError(f"bad ad-hoc mixture name {name!r}: K must be an integer") from None
    tasks = [t for t in body.split("+") if t]
    if make_mixture(tasks, K=K) != name:
        raise DataError(f"bad ad-hoc mixture name {name!r}; expected "
                        f"mix:task1+task2[@K=n]")
    return _ENTRIES[name]


def _try_providers() -> bool:
    """Let lazily registered suites (the offline suite) add their tasks; True if any ran."""
    ran = False
    for spec in _LAZY_PROVIDERS:
        if spec in _PROVIDERS_DONE:
            continue
        _PROVIDERS_DONE.add(spec)
        module_name, _, fn_name = spec.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        fn = getattr(module, fn_name, None)
        if callable(fn) and _callable_without_arguments(fn):
            fn()
            ran = True
    return ran


def _callable_without_arguments(fn: Callable) -> bool:
    import inspect

    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return all(p.default is not p.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
               for p in params)


def get(name: str) -> TaskInfo:
    """The task or mixture called `name`; a `DataError` naming close matches otherwise."""
    _ensure_builtins()
    info = _ENTRIES.get(name)
    if info is None and _try_providers():
        info = _ENTRIES.get(name)
    if info is None and isinstance(name, str) and name.startswith(ADHOC_PREFIX):
        return _adhoc_from_name(name)
    if info is None:
        close = difflib.get_close_matches(str(name), list(_ENTRIES), n=5, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else "; `spot tasks` lists them"
        raise DataError(f"unknown task or mixture {name!r}{hint}")
    return info


def names(kind: str | None = None) -> list[str]:
    """Registered names; `kind` filters: "task", "mixture", or a source (tfds, file, offline)."""
    _ensure_builtins()
    _try_providers()
    entries = list(_ENTRIES.values())
    if kind is None:
        return [e.name for e in entries]
    if kind == "task":
        return [e.name for e in entries if not e.is_mixture]
    if kind == "mixture":
        return [e.name for e in entries if e.is_mixture]
    if kind in SOURCES:
        return [e.name for e in entries if e.source == kind]
    raise DataError(f"unknown kind {kind!r}: use task, mixture, {', '.join(SOURCES)}")


def _ensure_builtins() -> None:
    global _BUILTINS_DONE
    if _BUILTINS_DONE:
        return
    with _LOCK:
        if _BUILTINS_DONE:
            return
        for d in TFDS_TASKS:
            info = TaskInfo(name=d.name, family=d.family, is_mixture=False, members=(d.name,),
                            metrics=d.metrics, label_words=d.label_words, source=TFDS,
                            description=d.description, splits=tuple(d.parts),
                            postprocessor=d.postprocessor, _backend=_TfdsBackend(d))
            _ENTRIES[d.name] = info
            _FINGERPRINTS[d.name] = ("builtin", d.name)
        for f in FILE_TASKS:
            info = TaskInfo(name=f.name, family=f.family, is_mixture=False, members=(f.name,),
                            metrics=f.metrics, label_words=f.label_words, source=FILE,
                            description=f.description, splits=f.splits,
                            postprocessor=f.postprocessor, _backend=_FileBackend(f))
            _ENTRIES[f.name] = info
            _FINGERPRINTS[f.name] = ("builtin", f.name)
        for name, members in MX.MIXTURES.items():
            _ENTRIES[name] = TaskInfo(
                name=name, family="mixture", is_mixture=True, members=members, metrics=(),
                label_words=None, source="mixture", K=MX.DEFAULT_K,
                description=f"the paper's {name} mixture ({len(members)} tasks)")
            _FINGERPRINTS[name] = ("builtin", name)
        _BUILTINS_DONE = True
