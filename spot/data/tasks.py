"""The catalogue: every task the papers name, where its data come from, how it is formatted
and scored. Pure data (no TensorFlow import), so registering it all costs microseconds.

TFDS names carry a pinned version so a run is reproducible and so availability can be
checked by looking for the prepared folder, without asking TFDS (or the network).
`num_examples` are the TFDS catalogue's split sizes: the fallback used for mixing rates and
listings when a dataset is not prepared here; a prepared dataset's own counts win.

Tasks TFDS does not carry read local files (see `FileTaskDef` and docs/tasks.md).
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

from spot.data import formats as F

TFDS = "tfds"
FILE = "file"

# Split sizes fall back to these; corpus-scale training sets are read up to this cap (the
# first examples in TFDS's seeded file order) so their tokens fit in host memory.
CORPUS_CAP = 2**21


@dataclasses.dataclass(frozen=True)
class TfdsTaskDef:
    name: str
    family: str
    parts: Mapping[str, tuple[tuple[str, str], ...]]  # split -> ((tfds name:version, tfds split),)
    formatter: F.Formatter
    metrics: tuple[str, ...]
    num_examples: Mapping[str, int]
    label_words: tuple[str, ...] | None = None
    postprocessor: str = "strip"
    description: str = ""
    cap: int | None = None  # read at most this many raw examples of a split


@dataclasses.dataclass(frozen=True)
class FileTaskDef:
    """A task TFDS does not carry: the user drops `<name>/<split>.{jsonl,tsv,csv}` under the
    data folder ($SPOT_DATA_DIR, default ~/spot_data) with the listed columns."""

    name: str
    family: str
    columns: tuple[str, ...]
    formatter: F.Formatter
    metrics: tuple[str, ...]
    label_words: tuple[str, ...] | None = None
    postprocessor: str = "strip"
    description: str = ""
    num_examples: Mapping[str, int] = dataclasses.field(default_factory=dict)
    splits: tuple[str, ...] = ("train", "validation")
    source_url: str = ""


def _one(tfds_name: str, train: str = "train", validation: str = "validation"):
    return {"train": ((tfds_name, train),), "validation": ((tfds_name, validation),)}


def _sizes(train: int, validation: int) -> dict[str, int]:
    return {"train": train, "validation": validation}


NLI3 = ("entailment", "neutral", "contradiction")
BINARY_ENTAILMENT = ("entailment", "not_entailment")
FALSE_TRUE = ("False", "True")
SENTIMENT2 = ("negative", "positive")

_GLUE = [
    TfdsTaskDef("cola", "glue", _one("glue/cola:2.0.0"),
                F.glue("cola", ("sentence",), ("unacceptable", "acceptable")), ("mcc",),
                _sizes(8551, 1043), ("unacceptable", "acceptable"),
                description="CoLA: grammatical acceptability"),
    TfdsTaskDef("sst2", "glue", _one("glue/sst2:2.0.0"),
                F.glue("sst2", ("sentence",), SENTIMENT2), ("accuracy",),
                _sizes(67349, 872), SENTIMENT2, description="SST-2: movie review sentiment"),
    TfdsTaskDef("mrpc", "glue", _one("glue/mrpc:2.0.0"),
                F.glue("mrpc", ("sentence1", "sentence2"), ("not_equivalent", "equivalent")),
                ("f1", "accuracy"), _sizes(3668, 408), ("not_equivalent", "equivalent"),
                description="MRPC: paraphrase"),
    TfdsTaskDef("qqp", "glue", _one("glue/qqp:2.0.0"),
                F.glue("qqp", ("question1", "question2"), ("not_duplicate", "duplicate")),
                ("f1", "accuracy"), _sizes(363846, 40430), ("not_duplicate", "duplicate"),
                description="QQP: duplicate questions"),
    TfdsTaskDef("stsb", "glue", _one("glue/stsb:2.0.0"),
                F.similarity("stsb", ("sentence1", "sentence2"), "label"),
                ("pearson", "spearman"), _sizes(5749, 1500), postprocessor="float",
                description="STS-B: sentence similarity 0-5, target rounded to 0.2"),
    TfdsTaskDef("mnli", "glue", _one("glue/mnli:2.0.0", validation="validation_matched"),
                F.glue("mnli", ("hypothesis", "premise"), NLI3), ("accuracy",),
                _sizes(392702, 9815), NLI3, description="MNLI (matched validation)"),
    TfdsTaskDef("qnli", "glue", _one("glue/qnli:2.0.0"),
                F.glue("qnli", ("question", "sentence"), BINARY_ENTAILMENT), ("accuracy",),
                _sizes(104743, 5463), BINARY_ENTAILMENT, description="QNLI"),
    TfdsTaskDef("rte", "glue", _one("glue/rte:2.0.0"),
                F.glue("rte", ("sentence1", "sentence2"), BINARY_ENTAILMENT), ("accuracy",),
                _sizes(2490, 277), BINARY_ENTAILMENT,
                description="RTE (same data in GLUE and SuperGLUE)"),
]

_SUPERGLUE = [
    TfdsTaskDef("boolq", "superglue", _one("super_glue/boolq:1.0.2"),
                F.glue("boolq", ("passage", "question"), FALSE_TRUE), ("accuracy",),
                _sizes(9427, 3270), FALSE_TRUE, description="BoolQ: yes/no questions"),
    TfdsTaskDef("cb", "superglue", _one("super_glue/cb:1.0.2"),
                F.glue("cb", ("hypothesis", "premise"),
                       ("entailment", "contradiction", "neutral")),
                ("accuracy", "macro_f1"), _sizes(250, 56),
                ("entailment", "contradiction", "neutral"), description="CommitmentBank"),
    TfdsTaskDef("copa", "superglue", _one("super_glue/copa:1.0.2"),
                F.glue("copa", ("choice1", "choice2", "premise", "question"),
                       ("choice1", "choice2")),
                ("accuracy",), _sizes(400, 100), ("choice1", "choice2"),
                description="COPA: causal reasoning"),
    TfdsTaskDef("multirc", "superglue", _one("super_glue/multirc:1.0.2"), F.multirc,
                ("multirc_f1a", "multirc_em"), _sizes(27243, 4848), FALSE_TRUE,
                description="MultiRC: one example per answer option; EM per question"),
    TfdsTaskDef("record", "superglue", _one("super_glue/record:1.0.2"), F.record,
                ("record_em", "record_f1"), _sizes(100730, 10000),
                description="ReCoRD: cloze over entities; max over gold answers"),
    TfdsTaskDef("wic", "superglue", _one("super_glue/wic:1.0.2"),
                F.glue("wic", ("sentence1", "sentence2", "word"), FALSE_TRUE), ("accuracy",),
                _sizes(5428, 638), FALSE_TRUE, description="Words in Context"),
    TfdsTaskDef("wsc", "superglue", _one("super_glue/wsc.fixed:1.0.2"), F.wsc, ("accuracy",),
                _sizes(554, 104), FALSE_TRUE,
                description="WSC: noun marked *..*, pronoun #..#; does it refer?"),
]

_ANLI_ROUNDS = ("r1", "r2", "r3")

_NLI = [
    TfdsTaskDef("anli", "nli",
                {"train": tuple((f"anli/{r}:0.1.0", "train") for r in _ANLI_ROUNDS),
                 "validation": tuple((f"anli/{r}:0.1.0", "validation") for r in _ANLI_ROUNDS)},
                F.nli("anli", "context", "hypothesis", NLI3), ("accuracy",),
                _sizes(16946 + 45460 + 100459, 1000 + 1000 + 1200), NLI3,
                description="Adversarial NLI, rounds 1-3 together"),
    TfdsTaskDef("docnli", "nli", _one("doc_nli:1.0.0"),
                F.nli("docnli", "premise", "hypothesis", ("not_entailment", "entailment")),
                ("accuracy",), _sizes(942314, 234258), ("not_entailment", "entailment"),
                description="DocNLI: document-level entailment"),
    TfdsTaskDef("snli", "nli", _one("snli:1.1.0"), F.nli("snli", "premise", "hypothesis", NLI3),
                ("accuracy",), _sizes(550152, 10000), NLI3,
                description="SNLI (pairs without a gold label are dropped)"),
]

_SENTIMENT = [
    TfdsTaskDef("goemotions", "sentiment", _one("goemotions:0.1.0"), F.goemotions,
                ("accuracy",), _sizes(43410, 5426), postprocessor="label_set",
                description="GoEmotions: the set of emotions, comma-separated"),
    TfdsTaskDef("sentiment140", "sentiment", _one("sentiment140:1.0.0", validation="test"),
                F.sentence_class("sentiment140", "text",
                                 {0: "negative", 2: "neutral", 4: "positive"}),
                ("accuracy",), _sizes(1600000, 498), ("negative", "neutral", "positive"),
                description="Sentiment140 tweets (validation = TFDS test)", cap=CORPUS_CAP),
    TfdsTaskDef("yelp2", "sentiment", _one("yelp_polarity_reviews:0.2.0", validation="test"),
                F.sentence_class("yelp2", "text", SENTIMENT2), ("accuracy",),
                _sizes(560000, 38000), SENTIMENT2,
                description="Yelp-2 review polarity (validation = TFDS test)"),
]


def _mrqa(name: str, config: str, train: int, validation: int) -> TfdsTaskDef:
    return TfdsTaskDef(name, "mrqa", _one(f"mrqa/{config}:1.0.0"), F.extractive_qa(name),
                       ("squad_em", "squad_f1"), _sizes(train, validation),
                       description=f"MRQA 2019 shared task: {config}")


_MRQA = [
    TfdsTaskDef("squad", "mrqa", _one("squad/v1.1:3.0.0"), F.extractive_qa("squad"),
                ("squad_em", "squad_f1"), _sizes(87599, 10570), description="SQuAD v1.1"),
    _mrqa("newsqa", "news_qa", 74160, 4212),
    _mrqa("triviaqa", "trivia_qa", 61688, 7785),
    _mrqa("searchqa", "search_qa", 117384, 16980),
    _mrqa("hotpotqa", "hotpot_qa", 72928, 5901),
    _mrqa("nq", "natural_questions", 104071, 12836),
]

COSMOS_CHOICES = ("answer0", "answer1", "answer2", "answer3")

_RAINBOW = [
    TfdsTaskDef("cosmosqa", "rainbow", _one("cosmos_qa:1.0.0"),
                F.multiple_choice("cosmosqa", (("context", "context"), ("question", "question")),
                                  COSMOS_CHOICES),
                ("accuracy",), _sizes(25262, 2985), COSMOS_CHOICES,
                description="Cosmos QA: commonsense reading comprehension"),
    TfdsTaskDef("hellaswag", "rainbow", _one("hellaswag:1.1.0"), F.hellaswag, ("accuracy",),
                _sizes(39905, 10042), tuple(f"ending{i}" for i in range(4)),
                description="HellaSwag: pick the ending"),
    TfdsTaskDef("piqa", "rainbow", _one("piqa:1.0.0"),
                F.multiple_choice("piqa", (("goal", "goal"),), ("sol1", "sol2")),
                ("accuracy",), _sizes(16113, 1838), ("sol1", "sol2"),
                description="PIQA: physical commonsense"),
    TfdsTaskDef("winogrande", "rainbow", _one("winogrande:1.2.0", train="train_xl"),
                F.multiple_choice("winogrande", (("sentence", "sentence"),),
                                  ("option1", "option2"), label_offset=0),
                ("accuracy",), _sizes(40398, 1267), ("option1", "option2"),
                description="WinoGrande (XL training set)"),
]

_TRANSLATION = [
    TfdsTaskDef("wmt_en_de", "translation", _one("wmt_t2t_translate/de-en:1.0.0"),
                F.translate("en", "de", "English", "German"), ("bleu",),
                _sizes(4592289, 3000), description="WMT En-De (T2T), BLEU", cap=CORPUS_CAP),
    TfdsTaskDef("wmt_en_fr", "translation", _one("wmt14_translate/fr-en:1.0.0"),
                F.translate("en", "fr", "English", "French"), ("bleu",),
                _sizes(40836876, 3000), description="WMT14 En-Fr, BLEU", cap=CORPUS_CAP),
    TfdsTaskDef("wmt_en_ro", "translation", _one("wmt16_translate/ro-en:1.0.0"),
                F.translate("en", "ro", "English", "Romanian"), ("bleu",),
                _sizes(610320, 1999), description="WMT16 En-Ro, BLEU"),
]

ROUGE = ("rouge1", "rouge2", "rougeL")


@dataclasses.dataclass(frozen=True)
class SummaryFields:
    """Where a summarization dataset keeps its text: the TFDS name, the document and summary
    features, an optional feature with every reference summary, and the split scored as
    validation."""

    tfds_name: str
    document: str
    summary: str
    references: str | None = None
    validation_split: str = "validation"


def _summ(name: str, fields: SummaryFields, sizes: dict[str, int], note: str,
          cap: int | None = None) -> TfdsTaskDef:
    return TfdsTaskDef(name, "summarization",
                       _one(fields.tfds_name, validation=fields.validation_split),
                       F.summarize(name, fields.document, fields.summary, fields.references),
                       ROUGE, sizes, description=note, cap=cap)


_SUMMARIZATION = [
    _summ("aeslc", SummaryFields("aeslc:1.0.0", "email_body", "subject_line"),
          _sizes(14436, 1960), "AESLC: e-mail subject lines"),
    _summ("billsum", SummaryFields("billsum:3.0.0", "text", "summary", validation_split="test"),
          _sizes(18949, 3269), "BillSum: US bills (validation = TFDS test)"),
    _summ("cnn_dailymail", SummaryFields("cnn_dailymail:3.4.0", "article", "highlights"),
          _sizes(287113, 13368), "CNN/DailyMail highlights"),
    _summ("wikilingua", SummaryFields("gem/wiki_lingua_english_en:1.1.0", "source", "target",
                                      references="references"),
          _sizes(99020, 13823), "WikiLingua (English), via the GEM release"),
    _summ("gigaword", SummaryFields("gigaword:1.2.0", "document", "summary"),
          _sizes(3803957, 189651), "Gigaword headlines", cap=CORPUS_CAP),
    _summ("multi_news", SummaryFields("multi_news:2.1.0", "document", "summary"),
          _sizes(44972, 5622), "Multi-News: multi-document"),
    _summ("newsroom", SummaryFields("newsroom:1.0.0", "text", "summary"),
          _sizes(995041, 108837), "Newsroom (TFDS needs a manual download)"),
    _summ("samsum", SummaryFields("samsum:1.0.0", "dialogue", "summary"),
          _sizes(14732, 818), "SAMSum dialogues (TFDS needs a manual download)"),
    _summ("xsum", SummaryFields("xsum:1.1.0", "document", "summary"),
          _sizes(203577, 11305), "XSum (TFDS needs a manual download)"),
]


def _gem(name: str, config: str, train: int, validation: int, metrics: tuple[str, ...],
         note: str) -> TfdsTaskDef:
    return TfdsTaskDef(name, "gem", _one(f"gem/{config}:1.1.0"),
                       F.gem(name, F.GEM_FIELDS[config]), metrics, _sizes(train, validation),
                       description=note)


D2T = ("bleu", "rougeL")

_GEM = [
    _gem("gem_common_gen", "common_gen", 67389, 993, D2T, "GEM CommonGen: concepts to text"),
    _gem("gem_dart", "dart", 62659, 2768, D2T, "GEM DART: triples to text"),
    _gem("gem_e2e_nlg", "e2e_nlg", 33525, 4299, D2T, "GEM E2E: restaurant meaning repr."),
    _gem("gem_sgd", "schema_guided_dialog", 164982, 10000, D2T,
         "GEM Schema-Guided Dialog: dialog acts to a response"),
    _gem("gem_web_nlg", "web_nlg_en", 35426, 1667, D2T, "GEM WebNLG (English)"),
    _gem("gem_wiki_auto", "wiki_auto_asset_turk", 483801, 20000, D2T,
         "GEM WikiAuto/ASSET/TURK: sentence simplification"),
    _gem("gem_xsum", "xsum", 23206, 1117, ROUGE, "GEM XSum (filtered)"),
    _gem("gem_wikilingua", "wiki_lingua_english_en", 99020, 13823, ROUGE,
         "GEM WikiLingua (English)"),
]

_OTHER = [
    TfdsTaskDef("c4", "pretraining", _one("c4/en:3.1.0"), F.prefix_lm, ("rougeL",),
                _sizes(364868892, 364608), cap=2**19,
                description="C4 prefix LM: continue a document from a random split point"),
    TfdsTaskDef("drop", "qa", _one("drop:2.0.0", validation="dev"), F.drop,
                ("squad_em", "squad_f1"), _sizes(77409, 9536),
                description="DROP: discrete reasoning over paragraphs (SQuAD-style EM/F1)"),
    TfdsTaskDef("race", "qa",
                {"train": (("race/high:2.0.0", "train"), ("race/middle:2.0.0", "train")),
                 "validation": (("race/high:2.0.0", "dev"), ("race/middle:2.0.0", "dev"))},
                F.race, ("accuracy",), _sizes(62445 + 25421, 3451 + 1436), F.RACE_LETTERS,
                description="RACE (high + middle): one example per question, target A-D"),
]

TFDS_TASKS: tuple[TfdsTaskDef, ...] = tuple(
    _GLUE + _SUPERGLUE + _NLI + _SENTIMENT + _MRQA + _RAINBOW + _TRANSLATION + _SUMMARIZATION
    + _GEM + _OTHER)

ALPHANLI_CHOICES = ("hypothesis1", "hypothesis2")
SOCIALIQA_CHOICES = ("answerA", "answerB", "answerC")

FILE_TASKS: tuple[FileTaskDef, ...] = (
    FileTaskDef("cr", "sentiment", ("sentence", "label"),
                F.sentence_class("cr", "sentence", SENTIMENT2), ("accuracy",), SENTIMENT2,
                description="Customer Reviews (SentEval CR); label 0 = negative, 1 = positive",
                source_url="https://www.cs.uic.edu/~liub/FBS/sentiment-analysis.html"),
    FileTaskDef("cxc", "paraphrase", ("sentence1", "sentence2", "score"),
                F.similarity("cxc", ("sentence1", "sentence2"), "score"),
                ("pearson", "spearman"), postprocessor="float",
                description="Crisscrossed Captions semantic textual similarity; score 0-5",
                source_url="https://github.com/google-research-datasets/Crisscrossed-Captions"),
    FileTaskDef("alphanli", "rainbow",
                ("observation1", "observation2", "hypothesis1", "hypothesis2", "label"),
                F.multiple_choice("alphanli", (("observation1", "observation1"),
                                               ("observation2", "observation2")),
                                  ALPHANLI_CHOICES, label_offset=1),
                ("accuracy",), ALPHANLI_CHOICES,
                description="aNLI (ART): the more plausible explanation; label 1 or 2",
                num_examples=_sizes(169654, 1532),
                source_url="https://leaderboard.allenai.org/anli/submissions/get-started"),
    FileTaskDef("socialiqa", "rainbow",
                ("context", "question", "answerA", "answerB", "answerC", "label"),
                F.multiple_choice("socialiqa", (("context", "context"), ("question", "question")),
                                  SOCIALIQA_CHOICES, label_offset=1),
                ("accuracy",), SOCIALIQA_CHOICES,
                description="Social IQa; label 1, 2 or 3",
                num_examples=_sizes(33410, 1954),
                source_url="https://leaderboard.allenai.org/socialiqa/submissions/get-started"),
)
