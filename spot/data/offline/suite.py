"""The embedded offline task suite: small real-language tasks with known relatedness.

Every task is built at run time from text and lexicons inside PyPI packages
(`spot.data.offline.sources`), so SPoT can run end to end on a machine with no dataset hub.
Tasks come in families whose members share an input format and label words; relatedness is
known by construction (same resource or same linguistic property, different slice or
framing), which is what a transfer study needs as ground truth.

Design choices, all in aid of a *tiny* frozen T5 learning them by prompt tuning alone:
closed label sets of single short words (rank classification), exactly balanced classes
(majority baseline = 1 / number of labels), inputs of a few dozen tokens, and word lists
restricted to words the pretraining corpus contains where supply allows.

Splits are fixed by seed and reproducible across runs and machines: every pool is put in a
sorted order before a seeded numpy permutation, nothing depends on dict/set iteration
order or on Python's hash randomization. Train and validation never share an example;
word tasks never share a *word* (relation tasks: a base word) across splits, and prose tasks
draw validation text only from the corpus's held-out documents (see corpus.py).

`python -m spot.data.offline.suite` prints the tables in docs/offline_suite.md.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import zlib
from collections import Counter
from typing import Callable, Sequence, TypeVar

import numpy as np

from spot.data.offline import corpus, sources
from spot.errors import DataError

T = TypeVar("T")
Pairs = list[tuple[str, str]]  # (inputs, targets)

PREFIX = "offline_"
SPLITS = ("train", "validation")
MIXTURE = "offline_sources"


@dataclasses.dataclass(frozen=True)
class OfflineTask:
    """One built task. `splits` maps split -> examples `{"inputs", "targets"}` (do not mutate:
    build_suite caches them)."""

    name: str
    family: str
    role: str  # "source", "target" or "extra" (registered, not part of the embedded demo)
    description: str
    why_related: str
    resources: str
    label_words: tuple[str, ...]
    metrics: tuple[str, ...]
    splits: dict[str, list[dict[str, str]]]

    def majority_baseline(self, split: str = "validation") -> float:
        """Accuracy of always answering the split's most frequent label."""
        counts = Counter(ex["targets"] for ex in self.splits[split])
        return max(counts.values()) / sum(counts.values())


@dataclasses.dataclass(frozen=True)
class _Spec:
    name: str
    family: str
    role: str
    label_words: tuple[str, ...]
    sizes: tuple[int, int]  # (train, validation); exact, asserted at build time
    builder: Callable[[np.random.Generator, int, "_Spec"], tuple[Pairs, Pairs]]
    description: str
    why_related: str
    resources: str


# ---------------------------------------------------------------------------------------------
# Shared helpers

_WORD = re.compile(r"[a-z]{3,}")
_TOKENS = re.compile(r"[a-z]+(?:'[a-z]+)?")


def _rng(seed: int, name: str) -> np.random.Generator:
    # crc32, not hash(): stable across processes and machines
    return np.random.default_rng([int(seed), zlib.crc32(name.encode())])


def _shuffled(items: Sequence[T], rng: np.random.Generator) -> list[T]:
    return [items[i] for i in rng.permutation(len(items))]


def _per_label(spec: _Spec) -> tuple[int, int]:
    k = len(spec.label_words)
    n_train, n_val = spec.sizes
    if n_train % k or n_val % k:
        raise AssertionError(f"{spec.name}: sizes {spec.sizes} are not divisible by {k} labels")
    return n_train // k, n_val // k


def _short_of(spec: _Spec, what: str, have: int, need: int) -> DataError:
    return DataError(f"offline task {spec.name}: only {have} {what} available, {need} needed; "
                     f"the installed package data differ from what this suite was built for")


def _split_pools(spec: _Spec, pools: dict[str, list[str]], rng: np.random.Generator,
                 fmt: Callable[[str], str]) -> tuple[Pairs, Pairs]:
    """Balanced train/validation from per-label pools of distinct items (validation first)."""
    per_train, per_val = _per_label(spec)
    train: Pairs = []
    val: Pairs = []
    for label in spec.label_words:
        items = _shuffled(sorted(pools[label]), rng)
        if len(items) < per_train + per_val:
            raise _short_of(spec, f"{label!r} items", len(items), per_train + per_val)
        val += [(fmt(x), label) for x in items[:per_val]]
        train += [(fmt(x), label) for x in items[per_val:per_val + per_train]]
    return _shuffled(train, rng), _shuffled(val, rng)


def _sample_pools(spec: _Spec, pools: dict[str, list[str]], per_label: int,
                  rng: np.random.Generator, split: str) -> Pairs:
    out: Pairs = []
    for label in spec.label_words:
        items = _shuffled(sorted(set(pools[label])), rng)
        if len(items) < per_label:
            raise _short_of(spec, f"{label!r} {split} items", len(items), per_label)
        out += [(x, label) for x in items[:per_label]]
    return _shuffled(out, rng)


@functools.lru_cache(maxsize=1)
def corpus_word_counts() -> Counter:
    """Lower-cased word counts over every corpus document: which words the backbone has seen."""
    counts: Counter = Counter()
    for d in corpus.all_documents():
        for p in d.paragraphs:
            counts.update(_TOKENS.findall(p.lower()))
    return counts


@functools.lru_cache(maxsize=1)
def known_words() -> frozenset[str]:
    """Common English words: those in the pretraining corpus or in TextBlob's frequency list
    (built from public-domain books). Word tasks prefer them, since a tiny backbone knows
    nothing about a word it never read."""
    return frozenset(corpus_word_counts()) | frozenset(sources.word_frequencies())


@functools.lru_cache(maxsize=8)
def _sentences(seed: int, split: str) -> tuple[tuple[corpus.Document, tuple[str, ...]], ...]:
    """(document, its sentences) for the corpus split; split "validation" = held-out docs."""
    def cut(d: corpus.Document) -> tuple[str, ...]:
        return tuple(s for p in d.paragraphs for s in corpus.sentences(p))

    train = tuple((d, cut(d)) for d in corpus.split_documents(seed)["train"])
    if split == "train":
        return train
    # Some news stories repeat sentences of others; such a sentence is not held out.
    seen = {s for _, ss in train for s in ss}
    return tuple((d, tuple(s for s in cut(d) if s not in seen))
                 for d in corpus.split_documents(seed)["heldout"])


def _fits(s: str, min_words: int, max_words: int, max_chars: int = 160) -> bool:
    """Length filter for prose inputs; 160 characters is about 42 pieces of the offline
    vocabulary, which keeps whole inputs near the ~48-token budget."""
    return min_words <= len(s.split()) <= max_words and len(s) <= max_chars


# ---------------------------------------------------------------------------------------------
# Family: sentiment (labels positive / negative)

SENTIMENT = ("positive", "negative")
_NEGATORS = frozenset("not no never nor without none nobody nothing neither cannot nowhere "
                      "hardly barely".split())


def _build_vader_valence(rng, seed, spec):
    lex = sources.vader_lexicon()
    known = known_words()
    pools: dict[str, list[str]] = {"positive": [], "negative": []}
    for w, v in lex.items():
        if _WORD.fullmatch(w) and w in known and abs(v) >= 1.0:
            pools["positive" if v > 0 else "negative"].append(w)
    return _split_pools(spec, pools, rng, lambda w: f"word valence: {w}")


def _build_adjective_valence(rng, seed, spec):
    vader = sources.vader_lexicon()
    pools: dict[str, list[str]] = {"positive": [], "negative": []}
    for w, (polarity, _) in sources.textblob_sentiment().items():
        if _WORD.fullmatch(w) and w not in vader and abs(polarity) >= 0.1:
            pools["positive" if polarity > 0 else "negative"].append(w)
    return _split_pools(spec, pools, rng, lambda w: f"adjective valence: {w}")


def sentence_tone(sentence: str) -> str | None:
    """A clear-cut lexicon label: positive (negative) when every VADER word in the sentence is
    positive (negative), their valences sum to at least 1.5 in magnitude, and nothing negates."""
    lex = sources.vader_lexicon()
    tokens = _TOKENS.findall(sentence.lower())
    if any(t in _NEGATORS or t.endswith("n't") for t in tokens):
        return None
    vals = [lex[t] for t in tokens if t in lex]
    if vals and all(v > 0 for v in vals) and sum(vals) >= 1.5:
        return "positive"
    if vals and all(v < 0 for v in vals) and sum(vals) <= -1.5:
        return "negative"
    return None


def _news_tone_of(doc, sentence: str, rng) -> tuple[str, str] | None:
    label = sentence_tone(sentence) if _fits(sentence, 5, 25) else None
    return (label, sentence) if label else None


def _build_review_polarity(rng, seed, spec):
    pools: dict[str, list[str]] = {"positive": [], "negative": []}
    for text, label in sources.pang_lee_sentences():
        pools[label].append(" ".join(text.split()[:30])[:160])  # a few run past the budget
    return _split_pools(spec, pools, rng, lambda s: f"sentence valence: {s}")


# ---------------------------------------------------------------------------------------------
# Family: part_of_speech (labels noun / verb / adjective / adverb)

POS = ("noun", "verb", "adjective", "adverb")
_BASE_TAGS = {"NN": "noun", "VB": "verb", "VBP": "verb", "JJ": "adjective", "RB": "adverb"}
_INFLECTED_TAGS = {"NNS": "noun", "VBD": "verb", "VBG": "verb", "JJR": "adjective",
                   "JJS": "adjective"}
_COARSE = {"NN": "noun", "NNS": "noun", "VB": "verb", "VBD": "verb", "VBG": "verb",
           "VBN": "verb", "VBP": "verb", "VBZ": "verb", "JJ": "adjective", "JJR": "adjective",
           "JJS": "adjective", "RB": "adverb", "RBR": "adverb", "RBS": "adverb"}


def _build_pos_word(rng, seed, spec):
    known = known_words()
    pools: dict[str, list[str]] = {label: [] for label in POS}
    for w, tag in sources.textblob_pos_lexicon().items():
        if tag in _BASE_TAGS and _WORD.fullmatch(w) and w in known:
            pools[_BASE_TAGS[tag]].append(w)
    return _split_pools(spec, pools, rng, lambda w: f"part of speech: {w}")


def _build_pos_inflected(rng, seed, spec):
    pools: dict[str, list[str]] = {label: [] for label in spec.label_words}
    for w, tag in sources.textblob_pos_lexicon().items():
        if tag in _INFLECTED_TAGS and _WORD.fullmatch(w):
            pools[_INFLECTED_TAGS[tag]].append(w)
    return _split_pools(spec, pools, rng, lambda w: f"part of speech: {w}")


@functools.lru_cache(maxsize=1)
def _tagger():
    try:
        from textblob.en.taggers import PatternTagger
    except ImportError as e:
        raise DataError(f"the offline suite needs TextBlob's tagger: pip install textblob ({e})")
    return PatternTagger()


def _build_pos_in_context(rng, seed, spec):
    """One tagged word per sentence, taking the label that is furthest behind its quota."""
    per_train, per_val = _per_label(spec)
    tagger = _tagger()
    out = []
    for split, per in (("train", per_train), ("validation", per_val)):
        sents = sorted({s for _, ss in _sentences(seed, split) for s in ss
                        if _fits(s, 6, 40, 400)})
        got: dict[str, Pairs] = {label: [] for label in POS}
        for s in _shuffled(sents, rng):
            tagged = tagger.tag(s)
            words = [w for w, _ in tagged]
            options: dict[str, list[int]] = {}
            for i, (w, tag) in enumerate(tagged):
                if _WORD.fullmatch(w) and tag in _COARSE:
                    options.setdefault(_COARSE[tag], []).append(i)
            wanted = [lab for lab in POS if lab in options and len(got[lab]) < per]
            if not wanted:
                if all(len(v) >= per for v in got.values()):
                    break
                continue
            label = min(wanted, key=lambda lab: (len(got[lab]), POS.index(lab)))
            i = options[label][int(rng.integers(len(options[label])))]
            context = " ".join(words[max(0, i - 6):i + 7])
            got[label].append((f"part of speech: {words[i]} | context: {context}", label))
        for label in POS:
            if len(got[label]) < per:
                raise _short_of(spec, f"{label!r} {split} sentences", len(got[label]), per)
        out.append(_shuffled([p for label in POS for p in got[label]], rng))
    return out[0], out[1]


# ---------------------------------------------------------------------------------------------
# Family: word_relation (labels yes / no)

YES_NO = ("yes", "no")
# relation -> (base tags, suffix, inflected tags, analogy category adding irregular pairs)
_RELATIONS = {
    "plural": (("NN",), "s", ("NNS",), "gram8-plural"),
    "past tense": (("VB", "VBP", "NN"), "ed", ("VBD", "VBN"), None),
    "present participle": (("VB", "VBP", "NN"), "ing", ("VBG",), "gram5-present-participle"),
    "third person": (("VB", "VBP"), "s", ("VBZ",), "gram9-plural-verbs"),
    "comparative": (("JJ",), "er", ("JJR",), "gram3-comparative"),
    "superlative": (("JJ",), "est", ("JJS",), "gram4-superlative"),
    "adverb": (("JJ",), "ly", ("RB",), "gram1-adjective-to-adverb"),
}


def _inflection_candidates(w: str, suffix: str) -> list[str]:
    """Regular English spellings of w + suffix (e-drop, y -> i, consonant doubling, -es...)."""
    out = [w + suffix]
    if suffix[0] in "aeiou":
        if w.endswith("e"):
            out.append(w[:-1] + suffix)
        if re.search(r"[^aeiou]y$", w) and suffix != "ing":
            out.append(w[:-1] + "i" + suffix)
        if re.search(r"(^|[^aeiou])[aeiou][bdgklmnprt]$", w):
            out.append(w + w[-1] + suffix)
    elif suffix == "s":
        out.append(w + "es")
        if re.search(r"[^aeiou]y$", w):
            out.append(w[:-1] + "ies")
    elif suffix == "ly":
        if re.search(r"[^aeiou]y$", w):
            out.append(w[:-1] + "ily")
        if w.endswith("le"):
            out.append(w[:-1] + "y")
        if w.endswith("ic"):
            out.append(w + "ally")
    return out


@functools.lru_cache(maxsize=1)
def inflection_table() -> dict[str, dict[str, str]]:
    """base word -> {relation: inflected form}, mined from the POS lexicon (a regular spelling
    of base + suffix that the lexicon tags as the inflected class) plus the analogy file's
    pairs, which add irregular forms (bad -> worse)."""
    lex = sources.textblob_pos_lexicon()
    analogies = sources.analogy_pairs()
    table: dict[str, dict[str, str]] = {}
    for relation, (base_tags, suffix, form_tags, category) in _RELATIONS.items():
        for w in sorted(lex):
            if lex[w] in base_tags and _WORD.fullmatch(w):
                for c in _inflection_candidates(w, suffix):
                    if lex.get(c) in form_tags:
                        table.setdefault(w, {})[relation] = c
                        break
        for a, b in analogies.get(category, ()) if category else ():
            if _WORD.fullmatch(a) and _WORD.fullmatch(b):
                table.setdefault(a, {})[relation] = b
    return table


def _build_relation(relation: str):
    def build(rng, seed, spec):
        table = inflection_table()
        bases = _shuffled(sorted(w for w, forms in table.items() if relation in forms), rng)
        n_train, n_val = spec.sizes
        need = n_val // 2 + n_train // 2
        if len(bases) < need:
            raise _short_of(spec, f"{relation!r} base words", len(bases), need)
        out = []
        for side in (bases[:n_val // 2], bases[n_val // 2:need]):
            pairs: Pairs = []
            for a in side:
                form = table[a][relation]
                pairs.append((f"relation {relation}: {a} -> {form}", "yes"))
                others = sorted({f for r, f in table[a].items() if r != relation and f != form})
                if others and rng.random() < 0.5:
                    wrong = others[int(rng.integers(len(others)))]
                else:  # the same relation's form of another base on this side of the split
                    while (b := side[int(rng.integers(len(side)))]) == a:
                        pass
                    wrong = table[b][relation]
                pairs.append((f"relation {relation}: {a} -> {wrong}", "no"))
            out.append(_shuffled(pairs, rng))
        return out[1], out[0]
    return build


# ---------------------------------------------------------------------------------------------
# Family: text (prose from the corpus; labels encyclopedia/news and same/different)

SAME = ("same", "different")


def _build_prose(prefix: str, pick: Callable[[corpus.Document, str, np.random.Generator],
                                              tuple[str, str] | None]):
    """A task over corpus sentences: `pick(document, sentence, rng)` gives (label, input text)
    or None to skip the sentence; training text from the training documents, validation text
    from the held-out ones."""
    def build(rng, seed, spec):
        per_train, per_val = _per_label(spec)
        out = []
        for split, per in (("train", per_train), ("validation", per_val)):
            pools: dict[str, list[str]] = {label: [] for label in spec.label_words}
            for doc, sents in _sentences(seed, split):
                for s in sents:
                    if (picked := pick(doc, s, rng)) is not None:
                        pools[picked[0]].append(picked[1])
            pairs = _sample_pools(spec, pools, per, rng, split)
            out.append([(f"{prefix}: {x}", y) for x, y in pairs])
        return out[0], out[1]
    return build


def _source_of(doc: corpus.Document) -> str:
    return "encyclopedia" if doc.source == "wikipedia" else "news"


def _snippet(sentence: str, rng: np.random.Generator) -> str | None:
    """4-8 consecutive words of a sentence of at least 6 words, at a random start."""
    words = sentence.split()
    if len(words) < 6:
        return None
    k = int(rng.integers(4, 9))
    start = int(rng.integers(0, max(1, len(words) - k + 1)))
    return " ".join(words[start:start + k])


_build_news_tone = _build_prose("sentence valence", _news_tone_of)
_build_text_source = _build_prose(
    "text source", lambda doc, s, rng: (_source_of(doc), s) if _fits(s, 6, 28) else None)
_build_snippet_source = _build_prose(
    "snippet source",
    lambda doc, s, rng: None if (x := _snippet(s, rng)) is None else (_source_of(doc), x))


# A word is characteristic of one source when its rate per corpus token there is at least this
# many times its rate in the other (add-0.5 smoothing) and it occurs at least this often there.
_WORD_SOURCE_RATIO = 4.0
_WORD_SOURCE_MIN_COUNT = 3


def word_source_pools(seed: int = 0) -> dict[str, list[str]]:
    """{label: sorted words} for `offline_word_source`, from the *training* documents only:
    words of 3+ letters whose per-token rate is `_WORD_SOURCE_RATIO` times higher in the
    Wikipedia articles ("encyclopedia") or in the Lee news stories ("news") and that occur at
    least `_WORD_SOURCE_MIN_COUNT` times there."""
    counts = {"encyclopedia": Counter(), "news": Counter()}
    for doc, sents in _sentences(seed, "train"):
        for s in sents:
            counts[_source_of(doc)].update(_WORD.findall(s.lower()))
    total = {k: sum(c.values()) for k, c in counts.items()}
    pools: dict[str, list[str]] = {"encyclopedia": [], "news": []}
    for w in sorted(set(counts["encyclopedia"]) | set(counts["news"])):
        rate = {k: (counts[k][w] + 0.5) / total[k] for k in counts}
        for label, other in (("news", "encyclopedia"), ("encyclopedia", "news")):
            if (counts[label][w] >= _WORD_SOURCE_MIN_COUNT
                    and rate[label] >= _WORD_SOURCE_RATIO * rate[other]):
                pools[label].append(w)
    return pools


def _build_word_source(rng, seed, spec):
    """Split by word: no validation word is a training word."""
    per_train, per_val = _per_label(spec)
    train: Pairs = []
    val: Pairs = []
    for label, words in word_source_pools(seed).items():
        if len(words) < per_train + per_val:
            raise _short_of(spec, f"{label!r} words", len(words), per_train + per_val)
        words = _shuffled(words, rng)
        val += [(f"word source: {w}", label) for w in words[:per_val]]
        train += [(f"word source: {w}", label) for w in words[per_val:per_val + per_train]]
    return _shuffled(train, rng), _shuffled(val, rng)


def _sentence_pairs(spec: _Spec, rng: np.random.Generator, groups: list[list[str]], per: int,
                    split: str) -> list[tuple[str, str, str]]:
    """`per` distinct same-group pairs (drawn from all of them) and `per` cross-group pairs."""
    same = [(g[i], g[j]) for g in groups for i in range(len(g)) for j in range(i + 1, len(g))]
    if len(same) < per:
        raise _short_of(spec, f"same-document {split} pairs", len(same), per)
    out = []
    for a, b in _shuffled(same, rng)[:per]:
        out.append((a, b, "same") if rng.random() < 0.5 else (b, a, "same"))
    seen: set[tuple[str, str]] = set()
    nonempty = [g for g in groups if g]
    while len(out) < 2 * per:
        gi, gj = (int(k) for k in rng.integers(len(nonempty), size=2))
        if gi == gj:
            continue
        a = nonempty[gi][int(rng.integers(len(nonempty[gi])))]
        b = nonempty[gj][int(rng.integers(len(nonempty[gj])))]
        if (a, b) not in seen:
            seen.add((a, b))
            out.append((a, b, "different"))
    return out


def _build_same_article(rng, seed, spec):
    per_train, per_val = _per_label(spec)
    out = []
    for split, per in (("train", per_train), ("validation", per_val)):
        # Wikipedia only: news stories are too short to give enough short-sentence pairs
        groups = [sorted({s for s in ss if _fits(s, 5, 14, 80)})
                  for d, ss in _sentences(seed, split) if d.source == "wikipedia"]
        triples = _sentence_pairs(spec, rng, groups, per, split)
        out.append(_shuffled([(f"same document: {a} | {b}", y) for a, b, y in triples], rng))
    return out[0], out[1]


def _build_title_match(rng, seed, spec):
    per_train, per_val = _per_label(spec)
    out = []
    for split, per in (("train", per_train), ("validation", per_val)):
        docs = [(d, sorted({s for s in ss if _fits(s, 6, 22, 130)}))
                for d, ss in _sentences(seed, split) if d.source == "wikipedia"]
        docs = [(d, ss) for d, ss in docs if len(ss) >= 2]
        titles = [d.title for d, _ in docs]
        # a "group" here is the title followed by its sentences: pair the title with a sentence
        seen: set[tuple[int, str]] = set()
        pairs: Pairs = []
        for label in SAME:
            made, tries = 0, 0
            while made < per:
                tries += 1
                if tries > 50 * per:
                    raise _short_of(spec, f"distinct {label!r} {split} pairs", made, per)
                ti = int(rng.integers(len(docs)))
                si = ti if label == "same" else int(rng.integers(len(docs)))
                if label == "different" and si == ti:
                    continue
                sents = docs[si][1]
                s = sents[int(rng.integers(len(sents)))]
                if (ti, s) in seen:
                    continue
                seen.add((ti, s))
                pairs.append((f"same topic: {titles[ti]} | {s}", label))
                made += 1
        out.append(_shuffled(pairs, rng))
    return out[0], out[1]


# ---------------------------------------------------------------------------------------------
# Family: word_similarity (labels similar / dissimilar); extras, see docs for why

SIMILAR = ("similar", "dissimilar")


def _build_similarity(filename: str):
    def build(rng, seed, spec):
        scores: dict[tuple[str, str], list[float]] = {}
        first: dict[tuple[str, str], tuple[str, str]] = {}
        for a, b, score in sources.word_similarity(filename):
            key = (min(a, b), max(a, b))  # both files repeat a few pairs, some reversed
            scores.setdefault(key, []).append(score)
            first.setdefault(key, (a, b))
        rows = sorted((first[k] + (sum(v) / len(v),) for k, v in scores.items()),
                      key=lambda r: (r[2], r[0], r[1]))
        third = len(rows) // 3
        pools = {"dissimilar": [f"{a} , {b}" for a, b, _ in rows[:third]],
                 "similar": [f"{a} , {b}" for a, b, _ in rows[-third:]]}
        return _split_pools(spec, pools, rng, lambda p: f"word similarity: {p}")
    return build


# ---------------------------------------------------------------------------------------------
# The catalogue

_WHY_SENTIMENT = ("All sentiment tasks ask for the valence of English text with the same two "
                  "label words; the word tasks teach the lexicon that decides the sentence "
                  "tasks (news_tone's labels are a function of VADER valences).")
_WHY_POS = ("All ask for the coarse part of speech of one word with the same label words; "
            "they differ in which words (base forms, inflected forms) and whether context "
            "is shown.")
_WHY_RELATION = ("Every task is the same yes/no question about a base word and a candidate "
                 "inflection, with the same input format; negatives include other inflections "
                 "of the same base, so each sibling teaches telling suffixes apart.")
_WHY_TEXT = ("All judge where corpus text comes from: the source's style from a whole "
             "sentence, from a few of its words or from one characteristic word "
             "(encyclopedia/news labels shared); the extras ask whether two sentences share a "
             "document or a sentence belongs under a title (same/different labels shared).")
_WHY_SIMILARITY = ("Both ask whether two words are close in meaning from human ratings; "
                   "wordsim353 rates relatedness, simlex999 strict similarity.")

_SPECS: tuple[_Spec, ...] = (
    _Spec("vader_valence", "sentiment", "source", SENTIMENT, (1600, 400), _build_vader_valence,
          "Is a word's mean human valence positive or negative? Words from VADER's lexicon "
          "with |valence| >= 1 that are common English (in the corpus or TextBlob's "
          "frequency list).",
          _WHY_SENTIMENT, "vaderSentiment: vader_lexicon.txt"),
    _Spec("news_tone", "sentiment", "source", SENTIMENT, (1600, 120), _build_news_tone,
          "Sentence valence of corpus sentences (5-25 words) whose VADER words all agree in "
          "sign and sum to |valence| >= 1.5, with no negation word; validation sentences come "
          "from held-out documents only.",
          _WHY_SENTIMENT, "gensim: Wikipedia dump and Lee corpus; vaderSentiment lexicon"),
    _Spec("review_polarity", "sentiment", "target", SENTIMENT, (100, 100),
          _build_review_polarity,
          "Polarity of movie-review sentences (Pang & Lee), first 30 words.",
          _WHY_SENTIMENT, "gensim: pang_lee_polarity.cor (cp1252)"),
    _Spec("adjective_valence", "sentiment", "extra", SENTIMENT, (400, 160),
          _build_adjective_valence,
          "Polarity of adjectives from TextBlob's subjectivity lexicon (mean over senses, "
          "|polarity| >= 0.1) that VADER does not list.",
          _WHY_SENTIMENT, "textblob: en/en-sentiment.xml"),
    _Spec("pos_word", "part_of_speech", "source", POS, (2000, 400), _build_pos_word,
          "Part of speech of a base-form word (NN, VB/VBP, JJ, RB in Brill's lexicon) that is "
          "common English (in the corpus or TextBlob's frequency list).",
          _WHY_POS, "textblob: en/en-lexicon.txt"),
    _Spec("pos_in_context", "part_of_speech", "source", POS, (2000, 400), _build_pos_in_context,
          "Part of speech of one word in a corpus sentence window, labelled by TextBlob's "
          "Brill-style tagger (lexicon plus contextual rules); validation from held-out "
          "documents.",
          _WHY_POS, "gensim: Wikipedia dump and Lee corpus; textblob tagger"),
    _Spec("pos_inflected", "part_of_speech", "target", ("noun", "verb", "adjective"), (240, 180),
          _build_pos_inflected,
          "Part of speech of an inflected word (NNS; VBD/VBG; JJR/JJS in Brill's lexicon).",
          _WHY_POS, "textblob: en/en-lexicon.txt"),
    _Spec("rel_plural", "word_relation", "source", YES_NO, (2000, 400),
          _build_relation("plural"),
          "Is the second word the plural of the first? Pairs mined from the POS lexicon plus "
          "the analogy file's gram8-plural.",
          _WHY_RELATION, "textblob: en/en-lexicon.txt; gensim: questions-words.txt"),
    _Spec("rel_past_tense", "word_relation", "source", YES_NO, (2000, 400),
          _build_relation("past tense"),
          "Is the second word the past tense of the first? Pairs mined from the POS lexicon.",
          _WHY_RELATION, "textblob: en/en-lexicon.txt"),
    _Spec("rel_comparative", "word_relation", "target", YES_NO, (180, 160),
          _build_relation("comparative"),
          "Is the second word the comparative of the first adjective? Negatives are often the "
          "superlative of the same adjective.",
          _WHY_RELATION, "textblob: en/en-lexicon.txt; gensim: questions-words.txt"),
    _Spec("text_source", "text", "source", ("encyclopedia", "news"), (2000, 300),
          _build_text_source,
          "Does a sentence come from a Wikipedia article or a Lee news story? Validation from "
          "held-out documents.",
          _WHY_TEXT, "gensim: Wikipedia dump and Lee corpus"),
    _Spec("word_source", "text", "source", ("encyclopedia", "news"), (1600, 400),
          _build_word_source,
          "Is a word characteristic of the Wikipedia articles or of the Lee news stories? "
          "Words whose rate per token is 4 times higher in one source of the training "
          "documents (at least 3 occurrences there); validation words are not training words.",
          _WHY_TEXT, "gensim: Wikipedia dump and Lee corpus"),
    _Spec("same_article", "text", "extra", SAME, (2000, 400), _build_same_article,
          "Do two Wikipedia sentences (5-14 words each) come from the same article? "
          "Validation pairs come from held-out articles.",
          _WHY_TEXT, "gensim: Wikipedia dump"),
    _Spec("snippet_source", "text", "target", ("encyclopedia", "news"), (240, 300),
          _build_snippet_source,
          "Do 4-8 consecutive words of a sentence come from a Wikipedia article or a Lee news "
          "story? Validation snippets come from held-out documents.",
          _WHY_TEXT, "gensim: Wikipedia dump and Lee corpus"),
    _Spec("title_match", "text", "extra", SAME, (1000, 300), _build_title_match,
          "Does a Wikipedia sentence come from the article with the given title? Validation "
          "titles and sentences are the held-out articles.",
          _WHY_TEXT, "gensim: Wikipedia dump"),
    _Spec("wordsim_relatedness", "word_similarity", "extra", SIMILAR, (150, 80),
          _build_similarity("wordsim353.tsv"),
          "Top vs bottom third of WordSim-353 human relatedness scores.",
          _WHY_SIMILARITY, "gensim: wordsim353.tsv"),
    _Spec("simlex_similarity", "word_similarity", "extra", SIMILAR, (420, 240),
          _build_similarity("simlex999.txt"),
          "Top vs bottom third of SimLex-999 human similarity scores.",
          _WHY_SIMILARITY, "gensim: simlex999.txt"),
)

_BY_NAME = {PREFIX + s.name: s for s in _SPECS}
TASK_NAMES: tuple[str, ...] = tuple(_BY_NAME)
SOURCE_TASKS: tuple[str, ...] = tuple(PREFIX + s.name for s in _SPECS if s.role == "source")
TARGET_TASKS: tuple[str, ...] = tuple(PREFIX + s.name for s in _SPECS if s.role == "target")
FAMILIES: dict[str, tuple[str, ...]] = {}
for _s in _SPECS:
    FAMILIES[_s.family] = FAMILIES.get(_s.family, ()) + (PREFIX + _s.name,)
# The documented example counts: {task: {split: n}}; the build asserts them.
EXPECTED_SIZES: dict[str, dict[str, int]] = {
    PREFIX + s.name: {"train": s.sizes[0], "validation": s.sizes[1]} for s in _SPECS}


def family_of(task: str) -> str:
    return _spec(task).family


def _spec(task: str) -> _Spec:
    try:
        return _BY_NAME[task]
    except KeyError:
        raise DataError(f"unknown offline task {task!r}; known: {', '.join(TASK_NAMES)}") from None


@functools.lru_cache(maxsize=64)
def build_task(task: str, seed: int = 0) -> OfflineTask:
    """Build one task (cached per seed)."""
    spec = _spec(task)
    train, val = spec.builder(_rng(seed, spec.name), int(seed), spec)
    splits = {"train": [{"inputs": x, "targets": y} for x, y in train],
              "validation": [{"inputs": x, "targets": y} for x, y in val]}
    for split, n in EXPECTED_SIZES[task].items():
        if len(splits[split]) != n:
            raise AssertionError(f"{task}/{split}: built {len(splits[split])} examples, "
                                 f"documented {n}")
    return OfflineTask(name=task, family=spec.family, role=spec.role,
                       description=spec.description, why_related=spec.why_related,
                       resources=spec.resources, label_words=spec.label_words,
                       metrics=("accuracy",), splits=splits)


def build_suite(seed: int = 0) -> dict[str, OfflineTask]:
    """Every offline task, keyed by its registered name (`offline_<task>`)."""
    return {name: build_task(name, seed) for name in TASK_NAMES}


def suite_fingerprint(seed: int = 0) -> str:
    """sha256 of every example of every split: equal across runs, processes and machines
    with the same package data (record it next to results built on the suite)."""
    import hashlib
    import json

    blob = json.dumps({n: t.splits for n, t in build_suite(seed).items()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def _packages_present() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(p) is not None
               for p in ("gensim", "vaderSentiment", "textblob"))


def _load_split(task: str, seed: int, split: str) -> list[dict[str, str]]:
    if split not in SPLITS:
        raise DataError(f"offline task {task} has no split {split!r} (it has train, validation)")
    return [dict(ex) for ex in build_task(task, seed).splits[split]]


def register_offline_suite(seed: int = 0) -> list[str]:
    """Register every task and the `offline_sources` mixture; nothing is built until read.

    Task names carry no seed, so one process uses one seed: registering again with another
    seed is a DataError from the registry."""
    from spot.data.registry import TextTaskSpec, register_mixture, register_text_task

    for name, spec in _BY_NAME.items():
        register_text_task(TextTaskSpec(
            name, family=spec.family,
            load_split=functools.partial(_load_split, name, int(seed)),
            splits=SPLITS, metrics=("accuracy",), label_words=spec.label_words,
            description=spec.description, source="offline",
            num_examples=EXPECTED_SIZES[name], available=_packages_present,
            location=f"offline suite (seed {int(seed)}): {spec.resources}"))
    register_mixture(MIXTURE, SOURCE_TASKS, family="mixture",
                     description="examples-proportional mixture of the offline source tasks")
    return [*TASK_NAMES, MIXTURE]


# ---------------------------------------------------------------------------------------------
# Documentation


def suite_markdown(seed: int = 0) -> str:
    """The task table of docs/offline_suite.md, computed from a build."""
    suite = build_suite(seed)
    lines = ["| task | family | role | labels | train | validation | majority baseline |",
             "|---|---|---|---|---|---|---|"]
    for name, t in suite.items():
        lines.append(f"| `{name}` | {t.family} | {t.role} | {' / '.join(t.label_words)} | "
                     f"{len(t.splits['train']):,} | {len(t.splits['validation']):,} | "
                     f"{100 * t.majority_baseline():.1f}% |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(suite_markdown())
    print()
    print(corpus.corpus_markdown())
