"""The papers' source mixtures and the transferability study's task lists.

Mixing is examples-proportional (Raffel et al. 2020): a member's rate is
min(num_train_examples, K), K = 2**19 unless configured; sampling probabilities are the rates
normalised to sum to one.
"""

from __future__ import annotations

DEFAULT_K = 2**19

GLUE = ("cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte")
SUPERGLUE = ("boolq", "cb", "copa", "multirc", "record", "rte", "wic", "wsc")
NLI = ("anli", "cb", "docnli", "mnli", "qnli", "rte", "snli")
PARAPHRASE = ("cxc", "mrpc", "qqp", "stsb")
SENTIMENT = ("cr", "goemotions", "sentiment140", "sst2", "yelp2")
MRQA = ("squad", "newsqa", "triviaqa", "searchqa", "hotpotqa", "nq")
RAINBOW = ("alphanli", "cosmosqa", "hellaswag", "piqa", "socialiqa", "winogrande")
TRANSLATION = ("wmt_en_de", "wmt_en_fr", "wmt_en_ro")
SUMMARIZATION = ("aeslc", "billsum", "cnn_dailymail", "wikilingua", "gigaword", "multi_news",
                 "newsroom", "samsum", "xsum")
GEM = ("gem_common_gen", "gem_dart", "gem_e2e_nlg", "gem_sgd", "gem_web_nlg", "gem_wiki_auto",
       "gem_xsum", "gem_wikilingua")


def _union(*groups: tuple[str, ...]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for g in groups:
        for t in g:
            seen.setdefault(t, None)
    return tuple(seen)


LABELED = _union(GLUE, SUPERGLUE, NLI, PARAPHRASE, SENTIMENT, MRQA, RAINBOW, TRANSLATION,
                 SUMMARIZATION, GEM)  # the 55 labeled tasks of the "All" mixture
ALL = ("c4",) + LABELED

MIXTURES: dict[str, tuple[str, ...]] = {
    "glue": GLUE,
    "superglue": SUPERGLUE,
    "nli": NLI,
    "paraphrase": PARAPHRASE,
    "sentiment": SENTIMENT,
    "mrqa": MRQA,
    "rainbow": RAINBOW,
    "translation": TRANSLATION,
    "summarization": SUMMARIZATION,
    "gem": GEM,
    "all": ALL,
}

# The learned-transferability study grid (T5 base, 3 seeds each).
STUDY_SOURCES = ("c4", "docnli", "yelp2", "mnli", "qqp", "qnli", "record", "cxc", "squad",
                 "drop", "sst2", "winogrande", "hellaswag", "multirc", "cosmosqa", "race")
STUDY_TARGETS = ("boolq", "cola", "stsb", "wic", "cr", "mrpc", "rte", "wsc", "copa", "cb")


def mixing_rate(num_examples: int, K: int = DEFAULT_K) -> float:
    """Examples-proportional rate: min(n, K)."""
    if K <= 0:
        raise ValueError(f"K must be positive, got {K}")
    return float(min(int(num_examples), int(K)))
