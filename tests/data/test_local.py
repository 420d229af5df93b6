"""User task files: the accepted layouts, and one clear error per malformed case (file,
line, problem)."""

from __future__ import annotations

import json

import click
import pytest
from click.testing import CliRunner

from spot.commands.options import registered_task_file_option
from spot.data import registry
from spot.data.local import register_task_file
from spot.errors import DataError


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def rows(n=3, split=None, start=0):
    out = []
    for i in range(start, start + n):
        r = {"id": f"r{i}", "inputs": f"text {i}", "targets": "pos" if i % 2 else "neg"}
        if split:
            r["split"] = split
        out.append(r)
    return out


def test_single_file_with_split_column(tmp_path):
    path = write_jsonl(tmp_path / "u_single.jsonl",
                       rows(4, "train") + rows(2, "validation", start=4))
    name = register_task_file(path)
    info = registry.get(name)
    assert (name, info.source, info.splits) == ("u_single", "file", ("train", "validation"))
    assert info.num_examples("train") == 4 and info.available()
    assert next(info.iter_examples("validation")) == {"inputs": "text 4", "targets": "neg",
                                                      "id": "r4"}
    assert register_task_file(path) == name  # registering the same file again is a no-op


def test_sibling_split_files_tsv_and_csv(tmp_path):
    (tmp_path / "u_sib.train.tsv").write_text("inputs\ttargets\na b\tx\nc d\ty\n")
    (tmp_path / "u_sib.validation.tsv").write_text("inputs\ttargets\ne f\tx\n")
    name = register_task_file(tmp_path / "u_sib.validation.tsv")
    assert name == "u_sib" and registry.get(name).num_examples("validation") == 1
    (tmp_path / "u_csv.train.csv").write_text('inputs,targets\n"hello, world",greeting\n')
    info = registry.get(register_task_file(tmp_path / "u_csv.train.csv"))
    assert next(info.iter_examples("train"))["inputs"] == "hello, world"


def test_toml_spec_with_template_labels_and_metric(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.csv").write_text(
        "id,premise,hypothesis,label\n1,It rains.,It is wet.,0\n2,Sun.,Snow.,1\n")
    (tmp_path / "data" / "dev.jsonl").write_text(
        json.dumps({"id": "3", "premise": "A", "hypothesis": "B", "label": 1}) + "\n")
    spec = tmp_path / "u_nli.toml"
    spec.write_text('name = "u_nli"\nfamily = "nli"\n'
                    'input_template = "u_nli premise: {premise} hypothesis: {hypothesis}"\n'
                    'target_field = "label"\nlabel_words = ["entailment", "not_entailment"]\n'
                    'label_map = {0 = "entailment", 1 = "not_entailment"}\n'
                    'metric = ["f1", "accuracy"]\n'
                    'train = "data/train.csv"\nvalidation = "data/dev.jsonl"\n')
    info = registry.get(register_task_file(spec))
    assert info.label_words == ("entailment", "not_entailment")
    assert info.metrics == ("f1", "accuracy") and info.family == "nli"
    assert list(info.iter_examples("train"))[0] == {
        "inputs": "u_nli premise: It rains. hypothesis: It is wet.", "targets": "entailment",
        "id": "1"}


# ---- malformed files: each names the file, the line and the problem -----------------


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"nope\.jsonl: no such file"):
        register_task_file(tmp_path / "nope.jsonl")
    spec = tmp_path / "u_missing.toml"
    spec.write_text('train = "absent.csv"\n')
    with pytest.raises(DataError, match=r"absent\.csv: no such file \(named by .*u_missing"):
        register_task_file(spec)


def test_missing_column(tmp_path):
    (tmp_path / "u_col.train.tsv").write_text("inputs\tlabel\nx\ty\n")
    with pytest.raises(DataError, match=r"u_col\.train\.tsv:1: missing column 'targets' "
                                        r"\(the header has 'inputs', 'label'\)"):
        register_task_file(tmp_path / "u_col.train.tsv")
    path = write_jsonl(tmp_path / "u_col2.jsonl", rows(2, "train") + [{"inputs": "z",
                                                                       "split": "train"}])
    with pytest.raises(DataError, match=r"u_col2\.jsonl:3: missing field 'targets'"):
        register_task_file(path)


def test_missing_template_column(tmp_path):
    (tmp_path / "t.csv").write_text("text,label\nhi,a\n")
    spec = tmp_path / "u_tpl.toml"
    spec.write_text('input_template = "{text} {title}"\ntarget_field = "label"\n'
                    'train = "t.csv"\n')
    with pytest.raises(DataError, match=r"t\.csv:1: missing column 'title'"):
        register_task_file(spec)


def test_empty_split(tmp_path):
    write_jsonl(tmp_path / "u_empty.train.jsonl", rows(2))
    (tmp_path / "u_empty.validation.jsonl").write_text("\n")
    with pytest.raises(DataError, match=r"u_empty\.validation\.jsonl: no examples for split "
                                        r"'validation'"):
        register_task_file(tmp_path / "u_empty.train.jsonl")
    path = write_jsonl(tmp_path / "u_nosplit.jsonl", rows(2, "validation"))
    with pytest.raises(DataError, match=r"u_nosplit\.jsonl: split 'train' is empty"):
        register_task_file(path)


def test_non_utf8_text(tmp_path):
    path = tmp_path / "u_latin.train.tsv"
    path.write_bytes("inputs\ttargets\nok\tx\ncaf\xe9\ty\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"u_latin\.train\.tsv:3: not valid UTF-8 text "
                                        r"\(byte 0xe9 at column 4\)"):
        register_task_file(path)


def test_target_outside_declared_labels(tmp_path):
    (tmp_path / "l.jsonl").write_text(
        '{"text": "a", "label": "pos", "split": "train"}\n'
        '{"text": "b", "label": "positive", "split": "train"}\n')
    spec = tmp_path / "u_labels.toml"
    spec.write_text('input_template = "{text}"\ntarget_field = "label"\n'
                    'label_words = ["pos", "neg"]\nfile = "l.jsonl"\n')
    with pytest.raises(DataError, match=r"l\.jsonl:2: target 'positive' is not one of the "
                                        r"declared labels \(pos, neg\)"):
        register_task_file(spec)


def test_duplicated_ids(tmp_path):
    write_jsonl(tmp_path / "u_dup.train.jsonl", rows(3))
    write_jsonl(tmp_path / "u_dup.validation.jsonl", rows(2, start=5) + rows(1, start=1))
    with pytest.raises(DataError, match=r"u_dup\.validation\.jsonl:3: duplicate id 'r1' "
                                        r"\(first seen at .*u_dup\.train\.jsonl:2\)"):
        register_task_file(tmp_path / "u_dup.train.jsonl")


def test_malformed_json_and_ragged_rows_and_bad_spec(tmp_path):
    path = tmp_path / "u_json.train.jsonl"
    path.write_text('{"inputs": "a", "targets": "b"}\n{"inputs": "a", "targets": }\n')
    with pytest.raises(DataError, match=r"u_json\.train\.jsonl:2: not valid JSON"):
        register_task_file(path)
    (tmp_path / "u_rag.train.tsv").write_text("inputs\ttargets\na\tb\nc\td\te\n")
    with pytest.raises(DataError, match=r"u_rag\.train\.tsv:3: expected 2 fields"):
        register_task_file(tmp_path / "u_rag.train.tsv")
    spec = tmp_path / "u_bad.toml"
    spec.write_text('train = "../outside.csv"\n')
    with pytest.raises(DataError, match="must stay inside"):
        register_task_file(spec)
    spec.write_text('train = "x.csv"\nmetric = "blue"\n')
    with pytest.raises(DataError, match=r"u_bad\.toml: unknown metric 'blue'"):
        register_task_file(spec)
    spec.write_text('trian = "x.csv"\n')
    with pytest.raises(DataError, match=r"u_bad\.toml: unknown key 'trian'"):
        register_task_file(spec)


def test_task_file_option_registers_before_the_command_body(tmp_path):
    path = write_jsonl(tmp_path / "u_cli.jsonl", rows(2, "train"))
    seen = []

    @click.command()
    @click.option("--task", required=True)
    @registered_task_file_option
    def cmd(task):
        seen.append(registry.get(task).source)

    result = CliRunner().invoke(cmd, ["--task", "u_cli", "--task-file", str(path)])
    assert result.exit_code == 0, result.output
    assert seen == ["file"]
    bad = tmp_path / "u_cli_bad.jsonl"
    bad.write_text("{oops\n")
    result = CliRunner().invoke(cmd, ["--task", "u_cli", "--task-file", str(bad)])
    assert result.exit_code != 0 and "u_cli_bad.jsonl:1: not valid JSON" in str(result.exception)
