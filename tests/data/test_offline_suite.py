"""The embedded offline suite: builds without network, documented sizes, seeded splits."""

from __future__ import annotations

import re
import socket
from collections import Counter
from pathlib import Path

import pytest

from spot.data.offline import corpus, sources, suite
from spot.errors import DataError

DOCS = Path(__file__).resolve().parents[2] / "docs" / "offline_suite.md"
WORD_TASKS = ("offline_vader_valence", "offline_adjective_valence", "offline_pos_word",
              "offline_pos_inflected")
RELATION_TASKS = ("offline_rel_plural", "offline_rel_past_tense", "offline_rel_comparative")


def _clear_caches() -> None:
    for fn in (suite.build_task, suite.corpus_word_counts, suite.known_words, suite._sentences,
               suite.inflection_table, corpus.all_documents, corpus.split_documents,
               sources.wikipedia_articles, sources.lee_documents, sources.analogy_pairs,
               sources.pang_lee_sentences, sources.vader_lexicon, sources.textblob_sentiment,
               sources.textblob_pos_lexicon, sources.word_frequencies):
        fn.cache_clear()


@pytest.fixture(scope="module")
def built() -> dict[str, suite.OfflineTask]:
    """A fresh build with every socket connection refused."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"the offline suite tried to open a network connection: {args}")

    _clear_caches()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", refuse)
        mp.setattr(socket.socket, "connect_ex", refuse)
        mp.setattr(socket, "create_connection", refuse)
        tasks = suite.build_suite(0)
    return tasks


def test_catalogue_shape():
    assert len(suite.TASK_NAMES) >= 12
    assert len(suite.FAMILIES) >= 4
    assert all(name.startswith("offline_") for name in suite.TASK_NAMES)
    assert not set(suite.SOURCE_TASKS) & set(suite.TARGET_TASKS)
    assert 6 <= len(suite.SOURCE_TASKS) <= 10 and len(suite.TARGET_TASKS) >= 4
    source_families = {suite.family_of(t) for t in suite.SOURCE_TASKS}
    for target in suite.TARGET_TASKS:
        assert suite.family_of(target) in source_families, target
    # every target family also has its sources: families stay distinguishable
    assert len({suite.family_of(t) for t in suite.TARGET_TASKS}) == len(suite.TARGET_TASKS)


def test_builds_offline_with_documented_counts(built):
    assert list(built) == list(suite.TASK_NAMES)
    for name, task in built.items():
        assert task.name == name
        sizes = {split: len(rows) for split, rows in task.splits.items()}
        assert sizes == suite.EXPECTED_SIZES[name], name
        for ex in task.splits["train"] + task.splits["validation"]:
            assert set(ex) == {"inputs", "targets"}
            assert ex["targets"] in task.label_words, (name, ex)
            assert ex["inputs"].strip() and "\n" not in ex["inputs"]


def test_docs_table_is_current(built):
    text = DOCS.read_text(encoding="utf-8")
    assert suite.suite_markdown(0) in text
    assert corpus.corpus_markdown(0) in text


def test_labels_balanced(built):
    for name, task in built.items():
        for split, rows in task.splits.items():
            counts = Counter(ex["targets"] for ex in rows)
            assert set(counts) == set(task.label_words), (name, split)
            assert max(counts.values()) - min(counts.values()) <= 1, (name, split, counts)
            assert task.majority_baseline(split) == pytest.approx(
                max(counts.values()) / len(rows))


def test_train_and_validation_disjoint(built):
    for name, task in built.items():
        train = [ex["inputs"] for ex in task.splits["train"]]
        val = [ex["inputs"] for ex in task.splits["validation"]]
        assert len(set(train)) == len(train) and len(set(val)) == len(val), name
        assert not set(train) & set(val), name
    for name in WORD_TASKS:  # no word in both splits
        words = {s: {ex["inputs"].split(": ", 1)[1] for ex in built[name].splits[s]}
                 for s in ("train", "validation")}
        assert not words["train"] & words["validation"], name
    for name in RELATION_TASKS:  # no base word in both splits
        bases = {s: {re.match(r"relation [a-z ]+: (\S+) ->", ex["inputs"]).group(1)
                     for ex in built[name].splits[s]} for s in ("train", "validation")}
        assert not bases["train"] & bases["validation"], name


def test_relation_negatives_include_same_base_inflections(built):
    val = built["offline_rel_comparative"].splits["validation"]
    table = suite.inflection_table()
    hard = [ex for ex in val if ex["targets"] == "no"
            and (m := re.match(r"relation comparative: (\S+) -> (\S+)", ex["inputs"]))
            and m.group(2) in table[m.group(1)].values()]
    assert len(hard) >= 0.2 * len(val) / 2  # a real share of negatives are "big -> biggest"
    for ex in val:
        a, b = re.match(r"relation comparative: (\S+) -> (\S+)", ex["inputs"]).groups()
        assert (table[a]["comparative"] == b) == (ex["targets"] == "yes")


def test_deterministic_and_seeded(built):
    suite.build_task.cache_clear()
    again = suite.build_suite(0)
    for name in suite.TASK_NAMES:
        assert again[name].splits == built[name].splits, name
    other = suite.build_suite(1)
    for name in suite.TASK_NAMES:
        assert other[name].splits["validation"] != built[name].splits["validation"], name


def test_same_build_in_another_process_with_other_hash_seed(built):
    """No dependence on set/dict order under hash randomization."""
    import os
    import subprocess
    import sys

    code = "from spot.data.offline.suite import suite_fingerprint; print(suite_fingerprint(0))"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, timeout=300)
    assert out.stdout.strip() == suite.suite_fingerprint(0)


def test_review_polarity_reads_all_pang_lee_sentences(built):
    rows = sources.pang_lee_sentences()
    assert len(rows) == 200 and Counter(y for _, y in rows) == {"positive": 100, "negative": 100}
    task = built["offline_review_polarity"]
    texts = {ex["inputs"].removeprefix("sentence valence: ") for s in task.splits
             for ex in task.splits[s]}
    assert texts == {" ".join(t.split()[:30])[:160] for t, _ in rows}


def test_prose_validation_comes_from_heldout_documents(built):
    heldout = " ".join(corpus.load_corpus("heldout", 0))
    train_text = " ".join(corpus.load_corpus("train", 0))
    prefix = {"offline_news_tone": "sentence valence: ", "offline_text_source": "text source: ",
              "offline_snippet_source": "snippet source: "}
    for name, p in prefix.items():
        for split, text in (("validation", heldout), ("train", train_text)):
            for ex in built[name].splits[split]:
                assert ex["inputs"].removeprefix(p) in text, (name, split, ex)
    for ex in built["offline_same_article"].splits["validation"]:
        a, b = ex["inputs"].removeprefix("same document: ").split(" | ")
        assert a in heldout and b in heldout and a not in train_text
    heldout_titles = {d.title for d in corpus.split_documents(0)["heldout"]}
    for ex in built["offline_title_match"].splits["validation"]:
        title = ex["inputs"].removeprefix("same topic: ").split(" | ")[0]
        assert title in heldout_titles


def test_word_source_words_are_characteristic_of_their_source_and_split_by_word(built):
    """Each word's rate per token in the training documents is at least 4 times that in the
    other source (recounted here from the documents), and no validation word is trained on."""
    counts = {"encyclopedia": Counter(), "news": Counter()}
    for doc, sents in suite._sentences(0, "train"):
        label = "encyclopedia" if doc.source == "wikipedia" else "news"
        for s in sents:
            counts[label].update(re.findall(r"[a-z]{3,}", s.lower()))
    total = {k: sum(c.values()) for k, c in counts.items()}
    task = built["offline_word_source"]
    words = {}
    for split, rows in task.splits.items():
        words[split] = set()
        for ex in rows:
            w = ex["inputs"].removeprefix("word source: ")
            assert re.fullmatch(r"[a-z]{3,}", w), ex
            own, other = ex["targets"], ({"encyclopedia", "news"} - {ex["targets"]}).pop()
            assert counts[own][w] >= 3, ex
            assert (counts[own][w] + 0.5) / total[own] >= 4 * (counts[other][w] + 0.5) / total[
                other], ex
            words[split].add(w)
        assert len(words[split]) == len(rows)  # no word twice within a split
    assert not words["train"] & words["validation"]


def test_sentence_tone_rule():
    lex = sources.vader_lexicon()
    assert lex["wonderful"] > 1.5 and lex["terrible"] < -1.5  # the premise of the checks below
    assert suite.sentence_tone("It was a wonderful day.") == "positive"
    assert suite.sentence_tone("It was a terrible day.") == "negative"
    assert suite.sentence_tone("It was not a wonderful day.") is None
    assert suite.sentence_tone("A wonderful and terrible day.") is None
    assert suite.sentence_tone("The table is in the room.") is None


def test_inflection_spelling_rules():
    assert "bigger" in suite._inflection_candidates("big", "er")
    assert "happier" in suite._inflection_candidates("happy", "er")
    assert "making" in suite._inflection_candidates("make", "ing")
    assert "cities" in suite._inflection_candidates("city", "s")
    assert "boxes" in suite._inflection_candidates("box", "s")
    table = suite.inflection_table()
    assert table["big"]["comparative"] == "bigger" and table["big"]["superlative"] == "biggest"
    assert table["bad"]["comparative"] == "worse"  # irregular, from the analogy file


def test_wiki_markup_stripping():
    wikitext = (
        "{{Infobox thing|name={{nowrap|X}}}}\n"
        "'''Anarchism''' is a [[political philosophy|philosophy]] that rejects [[hierarchy]]."
        "<ref name=a>{{cite web|url=http://x}}</ref> It is about {{convert|5|km}} long"
        " and sits in [[File:Map.png|thumb|A [[map]] caption]] plain text here today.\n\n"
        "== History ==\n* a list item that is not prose at all and is long enough to count\n"
        "{| class=wikitable\n| a || b\n|}\n\n"
        "Short.\n\n"
        "The second paragraph has enough words to be kept as a prose paragraph here.\n"
        "[[Category:Things]]")
    paragraphs = sources.strip_wiki_markup(wikitext)
    assert paragraphs == [
        "Anarchism is a philosophy that rejects hierarchy. It is about 5 km long and sits in "
        "plain text here today.",
        "The second paragraph has enough words to be kept as a prose paragraph here."]


def test_missing_package_is_a_data_error():
    with pytest.raises(DataError, match="pip install"):
        sources.package_file("spot_no_such_package_xyz", "data.txt")
    with pytest.raises(DataError, match="missing from the installed"):
        sources.package_file("textblob", "en", "no-such-file.txt")


def test_unknown_task_is_a_data_error():
    with pytest.raises(DataError, match="unknown offline task"):
        suite.build_task("offline_nope")


def test_registered_through_the_registry(built):
    from spot.data import registry

    names = suite.register_offline_suite(0)
    assert names[-1] == suite.MIXTURE
    assert suite.register_offline_suite(0) == names  # idempotent
    for name in suite.TASK_NAMES:
        info = registry.get(name)
        assert info.source == "offline" and info.family == suite.family_of(name)
        assert tuple(info.label_words) == built[name].label_words
        for split in ("train", "validation"):
            assert info.num_examples(split) == suite.EXPECTED_SIZES[name][split]
    val = list(registry.get("offline_rel_plural").iter_examples("validation"))
    assert val == built["offline_rel_plural"].splits["validation"]
    mix = registry.get(suite.MIXTURE)
    assert mix.is_mixture and tuple(mix.members) == suite.SOURCE_TASKS
