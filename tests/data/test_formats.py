"""T5 text formats, checked literally on hand-built raw examples (as TFDS yields them)."""

from __future__ import annotations

import numpy as np

from spot.data import formats as F
from spot.data.registry import get


def fmt(task: str, raw: dict, split: str = "validation") -> list[dict]:
    return get(task)._backend.d.formatter(raw, split)


def test_cb_format():
    raw = {"premise": b"It was a fine day.", "hypothesis": b"The day was fine.",
           "label": np.int64(0), "idx": np.int32(7)}
    (ex,) = fmt("cb", raw)
    assert ex["inputs"] == "cb hypothesis: The day was fine. premise: It was a fine day."
    assert ex["targets"] == "entailment"
    assert ex["id"] == "7"


def test_glue_formats_use_t5_field_order_and_label_names():
    (ex,) = fmt("mnli", {"premise": b"P.", "hypothesis": b"H.", "label": np.int64(2),
                         "idx": np.int32(0)})
    assert (ex["inputs"], ex["targets"]) == ("mnli hypothesis: H. premise: P.", "contradiction")
    (ex,) = fmt("cola", {"sentence": b"Him went.", "label": np.int64(0), "idx": np.int32(1)})
    assert (ex["inputs"], ex["targets"]) == ("cola sentence: Him went.", "unacceptable")
    (ex,) = fmt("copa", {"premise": b"The man fell.", "question": b"cause",
                         "choice1": b"He tripped.", "choice2": b"He sang.",
                         "label": np.int64(0), "idx": np.int32(3)})
    assert ex["inputs"] == ("copa choice1: He tripped. choice2: He sang. premise: The man fell. "
                            "question: cause")
    assert ex["targets"] == "choice1"
    # Unlabelled test rows (-1) become <unk>, and are never trained on.
    raw = {"sentence": b"x", "label": np.int64(-1), "idx": np.int32(1)}
    assert fmt("sst2", raw, "validation")[0]["targets"] == "<unk>"
    assert fmt("sst2", raw, "train") == []


def test_stsb_target_rounds_to_point_two():
    (ex,) = fmt("stsb", {"sentence1": b"A", "sentence2": b"B", "label": np.float32(3.71),
                         "idx": np.int32(0)})
    assert (ex["inputs"], ex["targets"]) == ("stsb sentence1: A sentence2: B", "3.8")
    assert F.stsb_target(0.09) == "0.0" and F.stsb_target(4.9) == "4.8"


def test_wsc_marks_noun_and_pronoun():
    raw = {"text": b"Mark told Pete many lies about himself, which Pete included in his book.",
           "span1_index": np.int32(0), "span1_text": b"Mark",
           "span2_index": np.int32(11), "span2_text": b"his",
           "label": np.int64(0), "idx": np.int32(5)}
    (ex,) = fmt("wsc", raw)
    assert ex["inputs"] == ("wsc text: * Mark * told Pete many lies about himself, which Pete "
                            "included in # his # book.")
    assert ex["targets"] == "False"


def test_multirc_strips_markup_and_groups_by_question():
    raw = {"paragraph": b"<b>Sent 1: </b>Cats purr.<br>", "question": b"What purrs?",
           "answer": b"Cats", "label": np.int64(1),
           "idx": {"paragraph": np.int32(4), "question": np.int32(2), "answer": np.int32(9)}}
    (ex,) = fmt("multirc", raw)
    assert ex["inputs"] == ("multirc question: What purrs? answer: Cats paragraph: "
                            "Sent 1: Cats purr. ")
    assert (ex["targets"], ex["group"]) == ("True", "4-2")


def test_record_highlights_and_one_example_per_answer_in_training():
    raw = {"passage": b"Storm hits town.\n@highlight\nMany flee\n@highlight\nRoads shut",
           "query": b"@placeholder closed the roads.", "entities": np.array([b"Storm", b"Roads"]),
           "answers": np.array([b"Storm", b"storm"]),
           "idx": {"passage": np.int32(1), "query": np.int32(2)}}
    train = fmt("record", raw, "train")
    assert [e["targets"] for e in train] == ["Storm", "storm"]
    (val,) = fmt("record", raw, "validation")
    assert val["inputs"] == ("record query: @placeholder closed the roads. entities: Storm, Roads "
                             "passage: Storm hits town. Many flee. Roads shut")
    assert val["answers"] == ["Storm", "storm"]


def test_qa_translation_summary_and_choice_formats():
    (ex,) = fmt("squad", {"question": b"Who?", "context": b"Ann ran.", "id": b"q1",
                          "answers": {"text": np.array([b"Ann", b"Ann"]),
                                      "answer_start": np.array([0, 0])}})
    assert (ex["inputs"], ex["targets"], ex["answers"]) == (
        "squad question: Who? context: Ann ran.", "Ann", ["Ann", "Ann"])
    (ex,) = fmt("wmt_en_de", {"en": b"Hello.", "de": b"Hallo."})
    assert (ex["inputs"], ex["targets"]) == ("translate English to German: Hello.", "Hallo.")
    (ex,) = fmt("cnn_dailymail", {"article": b"Long text.", "highlights": b"Short.",
                                  "id": b"x", "publisher": b"cnn"})
    assert (ex["inputs"], ex["targets"]) == ("cnn_dailymail summarize: Long text.", "Short.")
    (ex,) = fmt("winogrande", {"sentence": b"The trophy didn't fit because _ was big.",
                               "option1": b"trophy", "option2": b"case", "label": np.int64(0)})
    assert ex["inputs"] == ("winogrande sentence: The trophy didn't fit because _ was big. "
                            "option1: trophy option2: case")
    assert ex["targets"] == "option1"
    out = fmt("race", {"article": b"Text.", "questions": np.array([b"Q1?", b"Q2?"]),
                       "options": [np.array([b"a", b"b", b"c", b"d"])] * 2,
                       "answers": np.array([b"B", b"D"]), "example_id": b"r1"})
    assert [e["targets"] for e in out] == ["B", "D"]
    assert out[0]["inputs"] == "race question: Q1? A: a B: b C: c D: d article: Text."


def test_gem_and_prefix_lm():
    (ex,) = fmt("gem_common_gen", {"concepts": np.array([b"dog", b"ball"]), "target": b"A dog.",
                                   "references": np.array([b"A dog.", b"Dog plays."]),
                                   "gem_id": b"g1", "gem_parent_id": b"g",
                                   "concept_set_id": np.int32(0)})
    assert ex["inputs"] == "gem_common_gen concepts: dog, ball"
    assert ex["references"] == ["A dog.", "Dog plays."]
    doc = {"text": b"one two three four five six seven"}
    (a,) = fmt("c4", doc, "train")
    (b,) = fmt("c4", doc, "train")
    assert a == b  # the split point is a function of the text
    assert (a["inputs"] + " " + a["targets"]).split() == doc["text"].decode().split()


def test_label_words_match_tfds_class_names():
    tfds = __import__("pytest").importorskip("tensorflow_datasets")
    checks = {"cola": "glue/cola", "sst2": "glue/sst2", "mrpc": "glue/mrpc", "qqp": "glue/qqp",
              "mnli": "glue/mnli", "qnli": "glue/qnli", "rte": "glue/rte",
              "boolq": "super_glue/boolq", "cb": "super_glue/cb", "copa": "super_glue/copa",
              "multirc": "super_glue/multirc", "wic": "super_glue/wic",
              "wsc": "super_glue/wsc.fixed", "snli": "snli", "docnli": "doc_nli"}
    for task, name in checks.items():
        names = tuple(tfds.builder(name).info.features["label"].names)
        assert get(task).label_words == names, task
