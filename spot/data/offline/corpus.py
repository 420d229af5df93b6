"""The pretraining corpus of the embedded backbone: English prose that ships with gensim.

Documents are the 100 prose articles of gensim's shortened Wikipedia dump (markup stripped,
see `sources.strip_wiki_markup`) and the 343 distinct Lee corpus news stories. The held-out
split is chosen per *document* (10% of each source, by seed), never per paragraph, so the
held-out perplexity measures text from articles the backbone never saw.

The offline suite builds every validation example of its prose tasks (news_tone,
pos_in_context, text_source, snippet_source, same_article, title_match) from held-out
documents only, so the backbone is not pretrained on the text it is evaluated on. Use the
same seed for the backbone and the suite (both default to 0) to keep that guarantee.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re

import numpy as np

from spot.data.offline import sources
from spot.errors import DataError

HELDOUT_FRACTION = 0.1
SPLITS = ("train", "heldout")


@dataclasses.dataclass(frozen=True)
class Document:
    source: str  # "wikipedia" or "lee"
    title: str  # article title; "lee-<n>" for news stories, which have none
    paragraphs: tuple[str, ...]


@functools.lru_cache(maxsize=1)
def all_documents() -> tuple[Document, ...]:
    docs = [Document("wikipedia", a.title, a.paragraphs) for a in sources.wikipedia_articles()]
    docs += [Document("lee", f"lee-{i}", (text,)) for i, text in enumerate(sources.lee_documents())]
    return tuple(docs)


@functools.lru_cache(maxsize=8)
def split_documents(seed: int = 0) -> dict[str, tuple[Document, ...]]:
    """{"train": ..., "heldout": ...}: a seeded 10% of each source's documents is held out."""
    docs = all_documents()
    heldout_ids: set[int] = set()
    for k, source in enumerate(("wikipedia", "lee")):
        ids = [i for i, d in enumerate(docs) if d.source == source]
        rng = np.random.default_rng([seed, 1000 + k])
        n_heldout = math.ceil(HELDOUT_FRACTION * len(ids))
        heldout_ids.update(ids[j] for j in rng.permutation(len(ids))[:n_heldout])
    return {
        "train": tuple(d for i, d in enumerate(docs) if i not in heldout_ids),
        "heldout": tuple(d for i, d in enumerate(docs) if i in heldout_ids),
    }


def load_corpus(split: str = "train", seed: int = 0) -> list[str]:
    """Paragraphs of plain English prose, in document order, for pretraining or perplexity."""
    if split not in SPLITS:
        raise DataError(f"unknown corpus split {split!r}; expected one of {', '.join(SPLITS)}")
    return [p for d in split_documents(seed)[split] for p in d.paragraphs]


# Abbreviations whose period does not end a sentence.
_ABBREV = re.compile(r"(?:\b(?:Mr|Mrs|Ms|Dr|Prof|St|Sr|Jr|Gen|Col|Lt|Sgt|Capt|Gov|Sen|Rep|"
                     r"No|Vol|no|vs|etc|approx|ca|cf|e\.g|i\.e|Inc|Ltd|Co|Corp|Mt|Ft|Jan|Feb|"
                     r"Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)|\b[A-Z])\.$")
_BOUNDARY = re.compile(r"([.!?][\"')\]]*)\s+(?=[\"'(\[]?[A-Z0-9])")


def sentences(paragraph: str) -> list[str]:
    """A rule-based sentence split: good enough to cut prose into task-sized pieces."""
    out: list[str] = []
    start = 0
    for m in _BOUNDARY.finditer(paragraph):
        piece = paragraph[start:m.end(1)].strip()
        if _ABBREV.search(piece):
            continue  # keep accumulating: "Mr. Smith", "J. R. R. Tolkien", "U.S."
        if piece:
            out.append(piece)
        start = m.end()
    tail = paragraph[start:].strip()
    if tail:
        out.append(tail)
    return out


def corpus_markdown(seed: int = 0) -> str:
    """The corpus size table of docs/offline_suite.md, computed from the split."""
    lines = ["| split | source | documents | paragraphs | characters |", "|---|---|---|---|---|"]
    for split, docs in split_documents(seed).items():
        for source in ("wikipedia", "lee"):
            mine = [d for d in docs if d.source == source]
            paras = [p for d in mine for p in d.paragraphs]
            lines.append(f"| {split} | {source} | {len(mine):,} | {len(paras):,} | "
                         f"{sum(map(len, paras)):,} |")
    return "\n".join(lines)
