"""The registry: lookup, registration rules, mixtures and their examples-proportional rates."""

from __future__ import annotations

import pytest

from spot.data import mixtures as MX
from spot.data import registry
from spot.data.registry import TextTaskSpec
from spot.errors import DataError


def _loader(split: str) -> list[dict[str, str]]:
    return [{"inputs": f"{split} {i}", "targets": "yes" if i % 2 else "no"} for i in range(10)]


def _other_loader(split: str) -> list[dict[str, str]]:
    return [{"inputs": "x", "targets": "no"}]


def test_catalogue_covers_the_papers_tasks_and_mixtures():
    tasks = set(registry.names("task"))
    mixtures = set(registry.names("mixture"))
    assert {"glue", "superglue", "nli", "paraphrase", "sentiment", "mrqa", "rainbow",
            "translation", "summarization", "gem", "all"} <= mixtures
    for name, members in MX.MIXTURES.items():
        assert set(members) <= tasks, name
        assert registry.get(name).members == members
    assert len(MX.GLUE) == 8 and len(MX.SUPERGLUE) == 8 and len(MX.NLI) == 7
    assert len(MX.LABELED) == 55 and MX.ALL[0] == "c4"  # All = C4 + 55 labeled tasks
    assert len(MX.STUDY_SOURCES) == 16 and len(MX.STUDY_TARGETS) == 10
    assert set(MX.STUDY_SOURCES) | set(MX.STUDY_TARGETS) <= tasks
    # Tasks TFDS does not carry read local files.
    assert {registry.get(n).source for n in ("cr", "cxc", "alphanli", "socialiqa")} == {"file"}


def test_task_info_fields():
    info = registry.get("mrpc")
    assert (info.name, info.family, info.is_mixture, info.members) == ("mrpc", "glue", False,
                                                                       ("mrpc",))
    assert info.metrics == ("f1", "accuracy") and info.source == "tfds"
    assert info.label_words == ("not_equivalent", "equivalent")
    assert info.num_examples("train") == 3668 and info.num_examples("test") == 0
    assert registry.get("record").label_words is None
    assert registry.get("stsb").postprocessor == "float"


def test_unknown_name_suggests_close_matches():
    with pytest.raises(DataError, match=r"unknown task or mixture 'mnlii'.*mnli"):
        registry.get("mnlii")


def test_mixture_rates_are_min_n_K():
    glue = registry.get("glue")
    rates = glue.rates()
    for m in glue.members:
        assert rates[m] == min(registry.get(m).num_examples("train"), 2**19)
    small = glue.rates(K=5000)
    assert small["cola"] == 5000 and small["rte"] == 2490 and small["mnli"] == 5000
    with pytest.raises(DataError, match="training-set size of cxc is unknown"):
        registry.get("paraphrase").rates()  # CxC's files are not on this machine


def test_register_text_task_idempotent_and_conflicts():
    registry.register_text_task(TextTaskSpec(
        "t_reg_a", family="test", load_split=_loader,
                                label_words=("no", "yes"), num_examples={"train": 10}))
    registry.register_text_task(TextTaskSpec(
        "t_reg_a", family="test", load_split=_loader,
                                label_words=("no", "yes"), num_examples={"train": 10}))
    with pytest.raises(DataError, match="already registered with a different definition"):
        registry.register_text_task(TextTaskSpec(
            "t_reg_a", family="test", load_split=_other_loader,
                                    label_words=("no", "yes"), num_examples={"train": 10}))
    with pytest.raises(DataError, match="already registered"):
        registry.register_text_task(TextTaskSpec(
            "t_reg_a", family="other", load_split=_loader,
                                    label_words=("no", "yes"), num_examples={"train": 10}))
    with pytest.raises(DataError, match="unknown metric"):
        registry.register_text_task(TextTaskSpec(
            "t_reg_b", family="test", load_split=_loader,
                                    metrics=("accuracy", "blue")))
    info = registry.get("t_reg_a")
    assert info.source == "offline" and info.members == ("t_reg_a",)
    assert [e["inputs"] for e in info.iter_examples("validation")][:2] == ["validation 0",
                                                                           "validation 1"]
    assert info.num_examples("validation") == 10  # counted when not declared


def test_mixtures_flatten_and_adhoc_names():
    for n in ("t_mix_a", "t_mix_b"):
        registry.register_text_task(TextTaskSpec(
            n, family="test", load_split=_loader,
                                    num_examples={"train": 10 if n.endswith("a") else 30}))
    registry.register_mixture("t_mix_ab", ["t_mix_a", "t_mix_b"])
    registry.register_mixture("t_mix_nested", ["t_mix_ab", "t_mix_a", "rte"], K=20)
    nested = registry.get("t_mix_nested")
    assert nested.members == ("t_mix_a", "t_mix_b", "rte")
    assert nested.rates() == {"t_mix_a": 10.0, "t_mix_b": 20.0, "rte": 20.0}
    name = registry.make_mixture(["t_mix_b", "t_mix_a"])
    assert registry.get(name).members == ("t_mix_b", "t_mix_a")
    assert registry.make_mixture(["t_mix_b", "t_mix_a"]) == name  # same list, same mixture
    assert registry.make_mixture(["t_mix_b", "t_mix_a"], K=7) != name
    with pytest.raises(DataError, match="unknown task"):
        registry.make_mixture(["t_mix_a", "nope_task"])
    # Ad-hoc names describe themselves: a fresh process (a resumed run) can look them up.
    rebuilt = registry.get("mix:rte+cb@K=100")
    assert rebuilt.members == ("rte", "cb") and rebuilt.rates() == {"rte": 100.0, "cb": 100.0}
    with pytest.raises(DataError, match="K must be an integer"):
        registry.get("mix:rte+cb@K=lots")
    assert "t_mix_ab" in registry.names("mixture") and "t_mix_a" in registry.names("offline")


def test_file_backed_builtin_task_reads_the_data_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("SPOT_DATA_DIR", str(tmp_path))
    info = registry.get("cr")
    assert not info.available()
    with pytest.raises(DataError, match=r"cr/\{train,validation\}.*sentence, label"):
        next(info.iter_examples("train"))
    (tmp_path / "cr").mkdir()
    (tmp_path / "cr" / "train.tsv").write_text("sentence\tlabel\ngreat phone\t1\nbad\t0\n")
    (tmp_path / "cr" / "validation.jsonl").write_text('{"sentence": "meh", "label": 0}\n')
    assert info.available() and info.num_examples("train") == 2
    assert list(info.iter_examples("train")) == [
        {"inputs": "cr sentence: great phone", "targets": "positive"},
        {"inputs": "cr sentence: bad", "targets": "negative"}]
    (tmp_path / "cr" / "train.tsv").write_text("sentence\tlabel\ngreat phone\t1\nodd\t7\n")
    with pytest.raises(DataError, match=r"train.tsv:3: label '7' is not one of cr's labels"):
        list(info.iter_examples("train"))
    (tmp_path / "cr" / "validation.jsonl").write_text('{"text": "meh"}\n')
    with pytest.raises(DataError, match=r"validation.jsonl:1: missing field 'sentence'"):
        next(info.iter_examples("validation"))


def test_unprepared_tfds_task_reports_how_to_prepare(tmp_path, monkeypatch):
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
    info = registry.get("rte")
    assert not info.available()
    with pytest.raises(DataError, match=r"glue/rte:2.0.0.*tfds build glue/rte"):
        next(info.iter_examples("validation", download=False))
    # A prepared dataset's own split sizes replace the catalogue's.
    d = tmp_path / "glue" / "rte" / "2.0.0"
    d.mkdir(parents=True)
    (d / "dataset_info.json").write_text(
        '{"splits": [{"name": "train", "shardLengths": ["1000", "490"]},'
        ' {"name": "validation", "shardLengths": ["277"]}]}')
    assert info.available() and info.num_examples("train") == 1490


def test_import_is_cheap():
    import subprocess
    import sys

    code = ("import sys, spot.data.registry as r; r.names(); "
            "print(any(m.startswith(('tensorflow', 'seqio', 'jax')) for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_docs_catalogue_lists_every_builtin_task_and_mixture():
    from pathlib import Path

    from spot.data.tasks import FILE_TASKS, TFDS_TASKS

    doc = (Path(__file__).resolve().parents[2] / "docs" / "tasks.md").read_text()
    for d in TFDS_TASKS:
        row = next((line for line in doc.splitlines() if line.startswith(f"| `{d.name}` |")),
                   None)
        assert row is not None, d.name
        assert all(f"`{n}`" in row for parts in d.parts.values() for n, _ in parts), d.name
        assert ", ".join(d.metrics) in row, d.name
    for f in FILE_TASKS:
        row = next(line for line in doc.splitlines() if line.startswith(f"| `{f.name}` |"))
        assert all(f"`{c}`" in row for c in f.columns), f.name
    for name in MX.MIXTURES:
        assert f"| `{name}` |" in doc
