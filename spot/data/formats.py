"""T5-style text formats: one raw dataset example in, zero or more text examples out.

Each formatter takes a raw example as TFDS yields it through `as_numpy_iterator` (strings
as bytes, sequences as arrays, nested features as dicts) or as a local file row (strings),
plus the canonical split name, and returns dicts with `inputs` and `targets` text and the
extra fields a metric needs (`answers`, `group`, `references`). Formatters are plain
Python so they are testable without TensorFlow and shared by every vocabulary.

The house format follows T5: `<task> <field>: <value> <field>: <value> ...`, with the
class name as the target (`cb hypothesis: ... premise: ...` -> `entailment`).
"""

from __future__ import annotations

import re
import zlib
from typing import Any, Callable, Iterable, Sequence

import numpy as np

Example = dict[str, Any]
Formatter = Callable[[Example, str], list[Example]]


def text(value: Any) -> str:
    """A TFDS string (bytes), numpy scalar or Python value as a str."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.ndarray) and value.shape == ():
        return text(value.item())
    if isinstance(value, np.generic):
        return text(value.item())
    return str(value)


def texts(value: Any) -> list[str]:
    """A TFDS sequence of strings (array, list or ragged rows) as a list of str."""
    if value is None:
        return []
    if isinstance(value, (bytes, str)):
        return [text(value)]
    return [text(v) for v in list(value)]


def _num(value: Any) -> float:
    return float(np.asarray(value).item()) if not isinstance(value, (int, float)) else value


def _int(value: Any) -> int:
    return int(np.asarray(value).item()) if not isinstance(value, int) else value


def join_fields(prefix: str, pairs: Iterable[tuple[str, str]]) -> str:
    return " ".join([prefix] + [f"{k}: {v}" for k, v in pairs])


def label_word(words: Sequence[str], label: Any) -> str:
    """The class name of an integer label; `<unk>` for the -1 of unlabeled test sets."""
    i = _int(label)
    return words[i] if 0 <= i < len(words) else "<unk>"


# ---------------------------------------------------------------------------------------
# GLUE / SuperGLUE (T5's `glue` preprocessor: sorted feature names unless given)


def glue(prefix: str, fields: Sequence[str], words: Sequence[str]) -> Formatter:
    def fmt(ex: Example, split: str) -> list[Example]:
        label = _int(ex["label"])
        if label < 0 and split == "train":
            return []
        out: Example = {"inputs": join_fields(prefix, ((f, text(ex[f])) for f in fields)),
                        "targets": label_word(words, label)}
        if "idx" in ex and not isinstance(ex["idx"], dict):
            out["id"] = str(_int(ex["idx"]))
        return [out]

    return fmt


def stsb_target(score: float) -> str:
    """STS-B scores rounded to the nearest 0.2 and printed with one decimal, as T5 does."""
    return f"{round(score * 5) / 5:.1f}"


def similarity(prefix: str, fields: Sequence[str], score_field: str) -> Formatter:
    def fmt(ex: Example, split: str) -> list[Example]:
        out: Example = {"inputs": join_fields(prefix, ((f, text(ex[f])) for f in fields)),
                        "targets": stsb_target(_num(ex[score_field]))}
        if "idx" in ex:
            out["id"] = str(_int(ex["idx"]))
        return [out]

    return fmt


_MARKUP_BR = re.compile(r"<br>")
_MARKUP_B = re.compile(r"</?b>")


def multirc(ex: Example, split: str) -> list[Example]:
    paragraph = _MARKUP_B.sub("", _MARKUP_BR.sub(" ", text(ex["paragraph"])))
    idx = ex["idx"]
    group = f"{_int(idx['paragraph'])}-{_int(idx['question'])}"
    inputs = join_fields("multirc", (("question", text(ex["question"])),
                                     ("answer", text(ex["answer"])), ("paragraph", paragraph)))
    return [{"inputs": inputs, "targets": label_word(("False", "True"), ex["label"]),
             "group": group, "id": f"{group}-{_int(idx['answer'])}"}]


def _mark_span(sentence: str, span: str, index: int, mark: str) -> str:
    """Wrap the word run `span` starting at word `index` in `mark`s (T5's WSC marking)."""
    pattern = re.compile(r"^((?:\S+\s){%d})(%s)" % (max(index, 0), re.escape(span)))
    return pattern.sub(lambda m: f"{m.group(1)}{mark} {m.group(2)} {mark}", sentence, count=1)


def wsc(ex: Example, split: str) -> list[Example]:
    sentence = text(ex["text"])
    i1, i2 = _int(ex["span1_index"]), _int(ex["span2_index"])
    sentence = _mark_span(sentence, text(ex["span1_text"]), i1, "*")
    sentence = _mark_span(sentence, text(ex["span2_text"]), i2 + (2 if i1 < i2 else 0), "#")
    return [{"inputs": f"wsc text: {sentence}",
             "targets": label_word(("False", "True"), ex["label"]), "id": str(_int(ex["idx"]))}]


_HIGHLIGHT_PUNCT = re.compile(r"([.?!\"'])\n@highlight\n")
_HIGHLIGHT = re.compile(r"\n@highlight\n")


def record(ex: Example, split: str) -> list[Example]:
    """One example per gold answer for training; one per query (all answers kept) otherwise."""
    passage = _HIGHLIGHT.sub(". ", _HIGHLIGHT_PUNCT.sub(r"\1 ", text(ex["passage"])))
    entities = ", ".join(texts(ex["entities"]))
    inputs = f"record query: {text(ex['query'])} entities: {entities} passage: {passage}"
    answers = texts(ex["answers"])
    idx = ex["idx"]
    group = f"{_int(idx['passage'])}-{_int(idx['query'])}"
    if split == "train":
        return [{"inputs": inputs, "targets": a, "answers": answers, "id": f"{group}-{k}"}
                for k, a in enumerate(answers)]
    return [{"inputs": inputs, "targets": answers[0] if answers else "<unk>",
             "answers": answers, "id": group}]


# ---------------------------------------------------------------------------------------
# NLI, sentiment, paraphrase beyond GLUE


def nli(prefix: str, premise: str, hypothesis: str, words: Sequence[str]) -> Formatter:
    def fmt(ex: Example, split: str) -> list[Example]:
        label = _int(ex["label"])
        if label < 0:  # SNLI marks pairs without annotator agreement with -1
            return []
        return [{"inputs": join_fields(prefix, (("hypothesis", text(ex[hypothesis])),
                                                ("premise", text(ex[premise])))),
                 "targets": label_word(words, label)}]

    return fmt


def sentence_class(prefix: str, field: str, words: Sequence[str] | dict) -> Formatter:
    def fmt(ex: Example, split: str) -> list[Example]:
        label = ex.get("label", ex.get("polarity"))
        if isinstance(words, dict):
            target = words.get(_int(label), str(_int(label)))
        else:
            target = label_word(words, label)
        return [{"inputs": f"{prefix} sentence: {text(ex[field])}", "targets": target}]

    return fmt


GOEMOTIONS_LABELS = (
    "admiration", "amusement", "anger", "annoyance", "approval", "caring", "confusion",
    "curiosity", "desire", "disappointment", "disapproval", "disgust", "embarrassment",
    "excitement", "fear", "gratitude", "grief", "joy", "love", "nervousness", "optimism",
    "pride", "realization", "relief", "remorse", "sadness", "surprise", "neutral")


def goemotions(ex: Example, split: str) -> list[Example]:
    emotions = [e for e in GOEMOTIONS_LABELS if bool(np.asarray(ex.get(e, False)).item())]
    return [{"inputs": f"goemotions sentence: {text(ex['comment_text'])}",
             "targets": ", ".join(emotions) if emotions else "neutral"}]


# ---------------------------------------------------------------------------------------
# Question answering


def extractive_qa(prefix: str, answers_field: str = "answers") -> Formatter:
    def fmt(ex: Example, split: str) -> list[Example]:
        raw = ex[answers_field]
        if isinstance(raw, dict):  # squad/v1.1: {"text": [...], "answer_start": [...]}
            raw = raw["text"]
        answers = texts(raw)
        out: Example = {"inputs": join_fields(prefix, (("question", text(ex["question"])),
                                                       ("context", text(ex["context"])))),
                        "targets": answers[0] if answers else "", "answers": answers}
        for key in ("id", "qid"):
            if key in ex:
                out["id"] = text(ex[key])
        return [out]

    return fmt


def drop(ex: Example, split: str) -> list[Example]:
    answers = [text(ex["answer"])] + [a for a in texts(ex.get("validated_answers")) if a]
    return [{"inputs": join_fields("drop", (("question", text(ex["question"])),
                                            ("context", text(ex["passage"])))),
             "targets": answers[0], "answers": list(dict.fromkeys(answers)),
             "id": text(ex["query_id"])}]


RACE_LETTERS = ("A", "B", "C", "D")


def race(ex: Example, split: str) -> list[Example]:
    """One example per question of the article; the target is the option letter."""
    article = text(ex["article"])
    out = []
    for k, (question, options, answer) in enumerate(
            zip(texts(ex["questions"]), list(ex["options"]), texts(ex["answers"]))):
        opts = texts(options)
        pairs = [("question", question)] + [(RACE_LETTERS[i] if i < 4 else str(i), o)
                                            for i, o in enumerate(opts)]
        pairs.append(("article", article))
        out.append({"inputs": join_fields("race", pairs), "targets": answer.strip(),
                    "id": f"{text(ex['example_id'])}-{k}"})
    return out


def multiple_choice(prefix: str, context_fields: Sequence[tuple[str, str]],
                    option_fields: Sequence[str], label_field: str = "label",
                    label_offset: int = 0) -> Formatter:
    """Choices listed under their field names; the target is the right field's name
    (COPA's convention: `choice1`/`choice2`), a closed label set for rank classification."""

    def fmt(ex: Example, split: str) -> list[Example]:
        pairs = [(out_name, text(ex[field])) for out_name, field in context_fields]
        pairs += [(name, text(ex[name])) for name in option_fields]
        i = _int(ex[label_field]) - label_offset
        target = option_fields[i] if 0 <= i < len(option_fields) else "<unk>"
        return [{"inputs": join_fields(prefix, pairs), "targets": target}]

    return fmt


def hellaswag(ex: Example, split: str) -> list[Example]:
    endings = texts(ex["endings"])
    pairs = [("context", text(ex["context"]))] + [(f"ending{i}", e)
                                                  for i, e in enumerate(endings)]
    return [{"inputs": join_fields("hellaswag", pairs), "targets": f"ending{_int(ex['label'])}"}]


# ---------------------------------------------------------------------------------------
# Generation: translation, summarization, data-to-text, prefix LM


def translate(source: str, target: str, source_name: str, target_name: str) -> Formatter:
    def fmt(ex: Example, split: str) -> list[Example]:
        ref = text(ex[target])
        return [{"inputs": f"translate {source_name} to {target_name}: {text(ex[source])}",
                 "targets": ref, "references": [ref]}]

    return fmt


def summarize(prefix: str, document: str, summary: str,
              references: str | None = None) -> Formatter:
    def fmt(ex: Example, split: str) -> list[Example]:
        target = text(ex[summary])
        refs = [r for r in texts(ex.get(references))] if references else []
        return [{"inputs": f"{prefix} summarize: {text(ex[document])}", "targets": target,
                 "references": refs or [target]}]

    return fmt


def gem(prefix: str, build: Callable[[Example], Sequence[tuple[str, str]]]) -> Formatter:
    """GEM data-to-text: fields from `build`, the `target` text, all `references`."""

    def fmt(ex: Example, split: str) -> list[Example]:
        target = text(ex["target"])
        refs = [r for r in texts(ex.get("references")) if r]
        return [{"inputs": join_fields(prefix, build(ex)), "targets": target,
                 "references": refs or [target], "id": text(ex.get("gem_id", ""))}]

    return fmt


def _sgd_acts(ex: Example) -> str:
    acts = ex.get("dialog_acts") or {}
    slots = texts(acts.get("slot", []))
    values = list(acts.get("values", []))
    parts = []
    for i, slot in enumerate(slots):
        vals = texts(values[i]) if i < len(values) else []
        parts.append(f"{slot}={'|'.join(vals)}" if vals else slot)
    return "; ".join(p for p in parts if p)


GEM_FIELDS: dict[str, Callable[[Example], Sequence[tuple[str, str]]]] = {
    "common_gen": lambda ex: [("concepts", ", ".join(texts(ex["concepts"])))],
    "dart": lambda ex: [("triples", "; ".join(texts(ex["tripleset"])))],
    "e2e_nlg": lambda ex: [("meaning_representation", text(ex["meaning_representation"]))],
    "schema_guided_dialog": lambda ex: [("service", text(ex["service"])),
                                        ("acts", _sgd_acts(ex)),
                                        ("context", " ".join(texts(ex["context"])[-2:]))],
    "web_nlg_en": lambda ex: [("triples", "; ".join(texts(ex["input"])))],
    "wiki_auto_asset_turk": lambda ex: [("simplify", text(ex["source"]))],
    "xsum": lambda ex: [("summarize", text(ex["document"]))],
    "wiki_lingua_english_en": lambda ex: [("summarize", text(ex["source"]))],
}

PREFIX_LM_MAX_WORDS = 512


def prefix_lm(ex: Example, split: str) -> list[Example]:
    """C4 as prefix LM: split the document at a word boundary drawn from a hash of its text
    (so every epoch and every vocabulary sees the same split); predict the continuation."""
    words = text(ex["text"]).split()[: 2 * PREFIX_LM_MAX_WORDS]
    if len(words) < 2:
        return []
    rng = np.random.default_rng(zlib.crc32(" ".join(words).encode("utf-8")))
    cut = int(rng.integers(1, len(words)))
    return [{"inputs": " ".join(words[:cut][-PREFIX_LM_MAX_WORDS:]),
             "targets": " ".join(words[cut:][:PREFIX_LM_MAX_WORDS])}]
