"""User tasks from files: JSONL, TSV or CSV, or a small TOML spec over such files.

Everything is validated when the task is registered, before any training starts, and every
failure names the file, the line and the problem. Layouts (docs/tasks.md has examples):

* one file with `inputs`, `targets` and a `split` column (`train`, `validation`, ...);
* sibling files `<stem>.<split>.<ext>`, e.g. `reviews.train.jsonl` and
  `reviews.validation.jsonl` (pass either one; the task is called `<stem>`);
* a TOML spec: `input_template` over named columns, `target_field`, optional `label_words`,
  `label_map`, `metric`, `id_field`, and either `file` (with a split column) or one path
  per split (`train = "..."`, `validation = "..."`) relative to the spec's folder.

An optional `id` column (or `id_field`) must be unique across the task.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import re
import string
import tomllib
from pathlib import Path
from typing import Sequence

from spot.data.tables import DATA_EXTENSIONS, decode_lines, read_bytes, read_table
from spot.errors import DataError
from spot.fileio import confined_path

SPLIT_NAMES = ("train", "validation", "test")
_PARSED: dict[str, dict[str, list[dict[str, str]]]] = {}  # digest -> split -> examples


# ---------------------------------------------------------------------------------------
# Task specs


_TEMPLATE_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*$")


def _template_fields(template: str, where: str) -> list[str]:
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as e:
        raise DataError(f"{where}: bad input_template {template!r}: {e}") from None
    fields = []
    for _, field, spec, conv in parsed:
        if field is None:
            continue
        if not field or not _TEMPLATE_FIELD.match(field) or spec or conv:
            raise DataError(f"{where}: input_template may only use plain {{column}} "
                            f"placeholders, found {{{field}}}")
        fields.append(field)
    return fields


@dataclasses.dataclass(frozen=True)
class _Spec:
    """How rows become examples: which columns, which labels."""

    name: str
    family: str
    description: str
    template: str | None
    inputs_field: str
    target_field: str
    id_field: str | None
    split_field: str
    label_words: tuple[str, ...] | None
    label_map: dict[str, str] | None
    metrics: tuple[str, ...]
    where: str = dataclasses.field(default="", repr=False, compare=False)  # for messages

    def __post_init__(self) -> None:
        if self.template:  # an unusable template fails when the spec is made
            _template_fields(self.template, self.where)

    @property
    def template_fields(self) -> list[str]:
        return _template_fields(self.template, self.where) if self.template else []

    def required(self) -> list[str]:
        cols = self.template_fields if self.template else [self.inputs_field]
        return list(dict.fromkeys(cols + [self.target_field]))

    def example(self, row: dict, path: Path) -> dict[str, str]:
        n = row["_line"]
        if self.template:
            inputs = self.template.format(**{f: row[f] for f in self.template_fields})
        else:
            inputs = row[self.inputs_field]
        target = row[self.target_field]
        if self.label_map is not None and target in self.label_map:
            target = self.label_map[target]
        if not inputs.strip():
            raise DataError(f"{path}:{n}: empty input text")
        if not target.strip():
            raise DataError(f"{path}:{n}: empty target ({self.target_field!r})")
        if self.label_words is not None and target not in self.label_words:
            raise DataError(f"{path}:{n}: target {target!r} is not one of the declared labels "
                            f"({', '.join(self.label_words)})")
        ex = {"inputs": inputs, "targets": target}
        if self.id_field and self.id_field in row:
            ex["id"] = row[self.id_field]
        return ex


def _load_examples(spec: _Spec, files: dict[str, Path] | Path) -> dict[str, list[dict]]:
    """Read and validate every row; one split per file, or a split column in one file."""
    out: dict[str, list[dict]] = {}
    seen_ids: dict[str, tuple[Path, int]] = {}
    if isinstance(files, Path):
        plan = [(files, None)]
    else:
        plan = [(p, split) for split, p in files.items()]
    for path, split in plan:
        required = spec.required() + ([spec.split_field] if split is None else [])
        count = 0
        for row in read_table(path, required):
            s = split if split is not None else row[spec.split_field].strip()
            if split is None and not s:
                raise DataError(f"{path}:{row['_line']}: empty {spec.split_field!r} value")
            ex = spec.example(row, path)
            if "id" in ex:
                first = seen_ids.get(ex["id"])
                if first is not None:
                    raise DataError(f"{path}:{row['_line']}: duplicate id {ex['id']!r} (first "
                                    f"seen at {first[0]}:{first[1]})")
                seen_ids[ex["id"]] = (path, row["_line"])
            out.setdefault(s, []).append(ex)
            count += 1
        if count == 0:
            what = f"split {split!r}" if split else "any split"
            raise DataError(f"{path}: no examples for {what} (the file has no data rows)")
    if isinstance(files, Path):
        for s in ("train",):
            if s not in out:
                raise DataError(f"{files}: split {s!r} is empty (no row has "
                                f"{spec.split_field} = {s}; found: {', '.join(sorted(out))})")
    return out


def _digest(paths: Sequence[Path], extra: str) -> str:
    h = hashlib.sha256(extra.encode())
    for p in paths:
        h.update(str(p.resolve()).encode())
        h.update(read_bytes(p))
    return h.hexdigest()[:16]


def _split_files(path: Path) -> tuple[str, dict[str, Path]] | None:
    """`reviews.train.jsonl` -> ("reviews", {"train": ..., "validation": ...})."""
    parts = path.name.split(".")
    if len(parts) < 3 or parts[-2] not in SPLIT_NAMES:
        return None
    stem, ext = ".".join(parts[:-2]), "." + parts[-1]
    files = {}
    for split in SPLIT_NAMES:
        p = path.with_name(f"{stem}.{split}{ext}")
        if p.is_file():
            files[split] = p
    return stem, files


def _registered_examples(digest: str, split: str) -> list[dict[str, str]]:
    try:
        return _PARSED[digest][split]
    except KeyError:
        raise DataError(f"no examples for split {split!r}") from None


# A task file that declares no label words gets its distinct training targets as its label
# set when they look like classes (docs/tasks.md, "Label words"): few, each seen repeatedly,
# and covering every validation target.
MAX_INFERRED_LABELS = 20
MIN_LABEL_COUNT = 2


def infer_label_words(examples: dict[str, list[dict]]) -> tuple[tuple[str, ...] | None, str]:
    """(label words, a note saying why) from a task's examples; (None, why not) when the
    training targets are not a small closed set, so the task is scored by generation."""
    counts: dict[str, int] = {}
    for ex in examples.get("train", ()):
        counts[ex["targets"]] = counts.get(ex["targets"], 0) + 1
    rule = (f"at most {MAX_INFERRED_LABELS} distinct training targets, each seen at least "
            f"{MIN_LABEL_COUNT} times, covering every validation target")
    generation = "no label words declared; scored by generation (greedy decoding): "
    if len(counts) > MAX_INFERRED_LABELS:
        return None, generation + f"{len(counts)} distinct training targets (a label set " \
                                  f"needs {rule})"
    rare = sorted(t for t, n in counts.items() if n < MIN_LABEL_COUNT)
    if rare:
        shown = ", ".join(map(repr, rare[:3])) + (", ..." if len(rare) > 3 else "")
        return None, generation + f"training target {shown} seen only once (a label set " \
                                  f"needs {rule})"
    unseen = sorted({ex["targets"] for ex in examples.get("validation", ())} - set(counts))
    if unseen:
        shown = ", ".join(map(repr, unseen[:3])) + (", ..." if len(unseen) > 3 else "")
        return None, generation + f"validation target {shown} never occurs in training (a " \
                                  f"label set needs {rule})"
    words = tuple(sorted(counts))
    return words, (f"inferred from the training targets ({rule}); declare label_words in "
                   "a TOML spec to change them or their order")


def _register(spec: _Spec, examples: dict[str, list[dict]], digest: str, location: str,
              sources: Sequence[Path]) -> str:
    from spot.data import registry

    _PARSED[digest] = examples
    splits = tuple(s for s in SPLIT_NAMES if s in examples) + tuple(
        sorted(s for s in examples if s not in SPLIT_NAMES))
    words, note = spec.label_words, "declared by label_words"
    if words is None:
        words, note = infer_label_words(examples)
    registry.register_text_task(registry.TextTaskSpec(
        spec.name, family=spec.family,
        load_split=functools.partial(_registered_examples, digest), splits=splits,
        metrics=spec.metrics, label_words=words,
        description=spec.description or f"user task from {location}", source="file",
        num_examples={s: len(v) for s, v in examples.items()},
        available=lambda: all(p.is_file() for p in sources), location=location,
        content_key=digest, labels_note=note))
    return spec.name


def _plain_spec(name: str, where: str) -> _Spec:
    return _Spec(name=name, family="custom", description="", template=None,
                 inputs_field="inputs", target_field="targets", id_field="id",
                 split_field="split", label_words=None, label_map=None,
                 metrics=("accuracy",), where=where)


def _toml_spec(path: Path, name: str | None) -> tuple[_Spec, dict[str, Path] | Path]:
    from spot.data import scoring

    try:
        conf = tomllib.loads("\n".join(decode_lines(path, read_bytes(path))))
    except tomllib.TOMLDecodeError as e:
        raise DataError(f"{path}: invalid TOML: {e}") from None
    known = {"name", "family", "description", "input_template", "inputs_field", "target_field",
             "label_words", "label_map", "metric", "metrics", "id_field", "split_field", "file",
             *SPLIT_NAMES}
    unknown = sorted(set(conf) - known)
    if unknown:
        raise DataError(f"{path}: unknown key {', '.join(map(repr, unknown))} (known: "
                        f"{', '.join(sorted(known))})")

    def get_str(key: str, default: str | None = None) -> str | None:
        v = conf.get(key, default)
        if v is not None and not isinstance(v, str):
            raise DataError(f"{path}: {key} must be a string, found {type(v).__name__}")
        return v

    words = conf.get("label_words")
    if words is not None and (not isinstance(words, list) or not words
                              or not all(isinstance(w, str) and w for w in words)):
        raise DataError(f"{path}: label_words must be a non-empty list of strings")
    if words is not None and len(set(words)) != len(words):
        raise DataError(f"{path}: label_words has duplicates")
    label_map = conf.get("label_map")
    if label_map is not None:
        if not isinstance(label_map, dict) or not all(isinstance(v, str)
                                                      for v in label_map.values()):
            raise DataError(f"{path}: label_map must map raw values to label words (strings)")
        label_map = {str(k): v for k, v in label_map.items()}
        if words is not None:
            bad = [v for v in label_map.values() if v not in words]
            if bad:
                raise DataError(f"{path}: label_map values {bad} are not in label_words")
    metric = conf.get("metrics", conf.get("metric", "accuracy"))
    metrics = (metric,) if isinstance(metric, str) else tuple(metric)
    try:
        metrics = tuple(scoring.canonical_metric(m) for m in metrics)
    except DataError as e:
        raise DataError(f"{path}: {e}") from None
    template = get_str("input_template")
    spec = _Spec(name=name or get_str("name") or path.stem, family=get_str("family", "custom"),
                 description=get_str("description", ""), template=template,
                 inputs_field=get_str("inputs_field", "inputs"),
                 target_field=get_str("target_field", "targets"),
                 id_field=get_str("id_field", "id"), split_field=get_str("split_field", "split"),
                 label_words=tuple(words) if words else None, label_map=label_map,
                 metrics=metrics, where=str(path))
    root = path.parent
    if "file" in conf:
        if any(s in conf for s in SPLIT_NAMES):
            raise DataError(f"{path}: give either `file` (with a split column) or one file "
                            f"per split, not both")
        return spec, _spec_path(root, get_str("file"), path)
    files = {s: _spec_path(root, get_str(s), path) for s in SPLIT_NAMES if s in conf}
    if "train" not in files:
        raise DataError(f"{path}: names no data: add `file = ...` or `train = ...` "
                        f"(and `validation = ...`)")
    return spec, files


def _spec_path(root: Path, rel: str | None, spec_path: Path) -> Path:
    if not rel:
        raise DataError(f"{spec_path}: empty data path")
    try:
        return confined_path(root, *Path(rel).parts)
    except Exception as e:  # confined_path raises SpotError for escapes and absolute paths
        raise DataError(f"{spec_path}: data path {rel!r} must stay inside {root}: {e}") from None


def register_task_file(path: str | os.PathLike, *, name: str | None = None) -> str:
    """Validate a task file (or TOML spec) completely and register the task; its name."""
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if path.suffix.lower() == ".toml":
        spec, files = _toml_spec(path, name)
    elif path.suffix.lower() in DATA_EXTENSIONS:
        siblings = _split_files(path)
        if siblings is not None:
            stem, files = siblings
            spec = _plain_spec(name or stem, str(path))
            if "train" not in files:
                raise DataError(f"{path}: found no {stem}.train{path.suffix} beside it")
        else:
            spec, files = _plain_spec(name or path.stem, str(path)), path
    else:
        raise DataError(f"{path}: unsupported task file type {path.suffix or '(none)'}; use "
                        f"{', '.join(DATA_EXTENSIONS)} or .toml")
    paths = [files] if isinstance(files, Path) else list(files.values())
    for p in paths:
        if not p.is_file():
            raise DataError(f"{p}: no such file (named by {path})")
    digest = _digest(paths, repr(spec))
    examples = _PARSED.get(digest)
    if examples is None:  # registering the same unchanged file again skips re-validation
        examples = _load_examples(spec, files)
    return _register(spec, examples, digest, str(path.resolve()), paths)
