"""A capped evaluation (`max_examples`, the demo's `max_eval_examples`) scores a class-balanced
subset, so its majority baseline is the split's and not that of the split's first rows."""

from __future__ import annotations

from collections import Counter

import pytest

from spot.data import pipeline, registry
from spot.data.registry import TextTaskSpec


@pytest.fixture(scope="module")
def vocab(vocab_path):
    from spot.data.vocab import load_vocabulary

    return load_vocabulary(vocab_path)


def _task(name: str, labels: list[str], label_words=("no", "yes")) -> str:
    rows = [{"inputs": f"item {i}", "targets": t, "id": str(i)} for i, t in enumerate(labels)]
    registry.register_text_task(TextTaskSpec(
        name, family="test", load_split=lambda split: list(rows),
                                label_words=label_words,
                                num_examples={"train": len(rows), "validation": len(rows)}))
    return name


def _classes(es) -> Counter:
    return Counter(es.targets)


def test_cap_takes_the_classes_in_equal_shares(vocab):
    # The split's head is all one class: the first 4 rows would be a 100% majority.
    name = _task("p_sub_sorted", ["yes"] * 6 + ["no"] * 6)
    es = pipeline.eval_set(name, vocab=vocab, input_length=8, target_length=3, max_examples=4)
    assert _classes(es) == {"yes": 2, "no": 2}
    # The first examples of each class, in split order.
    assert [e["id"] for e in es.examples] == ["0", "1", "6", "7"]
    # An odd cap gives the extra example to the class met first.
    es = pipeline.eval_set(name, vocab=vocab, input_length=8, target_length=3, max_examples=5)
    assert _classes(es) == {"yes": 3, "no": 2}


def test_a_short_class_leaves_its_share_to_the_others(vocab):
    name = _task("p_sub_short", ["yes"] * 9 + ["no"])
    es = pipeline.eval_set(name, vocab=vocab, input_length=8, target_length=3, max_examples=4)
    assert len(es) == 4 and _classes(es) == {"yes": 3, "no": 1}


def test_no_cap_or_open_ended_tasks_keep_the_split_order(vocab):
    name = _task("p_sub_all", ["yes"] * 3 + ["no"] * 3)
    es = pipeline.eval_set(name, vocab=vocab, input_length=8, target_length=3)
    assert es.targets == ["yes"] * 3 + ["no"] * 3
    open_ended = _task("p_sub_open", ["yes"] * 3 + ["no"] * 3, label_words=None)
    es = pipeline.eval_set(open_ended, vocab=vocab, input_length=8, target_length=3,
                           max_examples=2)
    assert es.targets == ["yes", "yes"]


def test_offline_pos_word_capped_at_200_is_balanced(vocab):
    # The demo's cap: the split's first 200 rows are not balanced (adverbs lead).
    info = registry.get("offline_pos_word")
    head = Counter(e["targets"] for e, _ in zip(info.iter_examples("validation"), range(200)))
    assert len(set(head.values())) > 1
    es = pipeline.eval_set("offline_pos_word", vocab=vocab, input_length=16, target_length=4,
                           max_examples=200)
    assert _classes(es) == {w: 50 for w in info.label_words}
