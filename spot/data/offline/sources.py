"""Readers for the English text and lexicons that ship inside PyPI packages.

Nothing here is copied into the repository: every reader finds its file inside the
installed package at run time (without importing the package, which for gensim would
pull in scipy and take seconds), so the offline suite works on any machine where
`pip install spot` worked. A missing package or file is a DataError naming what to install.

Resources used (see docs/offline_suite.md):
  gensim      test/test_data/: Wikipedia dump (bz2 XML), Lee news corpus, questions-words
              analogies, wordsim353, simlex999, pang_lee polarity sentences (cp1252)
  vaderSentiment  vader_lexicon.txt (mean human valence, -4..4)
  textblob    en/en-sentiment.xml (adjective polarity), en/en-lexicon.txt (Brill POS
              lexicon), en/en-spelling.txt (word frequencies)
"""

from __future__ import annotations

import bz2
import dataclasses
import functools
import html
import importlib.util
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from spot.errors import DataError

# import name -> pip name, for the error message
_PIP_NAMES = {"gensim": "gensim", "vaderSentiment": "vaderSentiment", "textblob": "textblob"}

WIKI_DUMP = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"


def package_file(package: str, *parts: str) -> Path:
    """A data file inside an installed package, or a DataError saying what to install."""
    spec = importlib.util.find_spec(package)
    pip_name = _PIP_NAMES.get(package, package)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"the offline suite needs the package {package!r}: "
                        f"pip install {pip_name}")
    root = Path(next(iter(spec.submodule_search_locations)))
    path = root.joinpath(*parts)
    if not path.is_file():
        raise DataError(f"{path} is missing from the installed {package!r}; reinstall it with "
                        f"pip install --force-reinstall {pip_name}")
    return path


def gensim_test_file(name: str) -> Path:
    return package_file("gensim", "test", "test_data", name)


# ---------------------------------------------------------------------------------------------
# Wikipedia


@dataclasses.dataclass(frozen=True)
class Article:
    title: str
    paragraphs: tuple[str, ...]


_COMMENT = re.compile(r"<!--.*?-->", re.S)
_REF = re.compile(r"<ref[^>/]*/>|<ref[^>]*>.*?</ref>", re.S | re.I)
_BLOCK_TAGS = re.compile(r"<(gallery|math|timeline|code|source|pre|syntaxhighlight|score|imagemap)"
                         r"[^>]*>.*?</\1>", re.S | re.I)
_TAG = re.compile(r"<[^>]+>")
_HEADING = re.compile(r"^=+.*=+\s*$", re.M)
_EXTLINK = re.compile(r"\[(?:https?|ftp)://\S+(?: ([^\]]*))?\]")
_BARE_URL = re.compile(r"https?://\S+")
_BOLD_ITALIC = re.compile(r"'{2,}")
_NON_ARTICLE_LINK = re.compile(
    r"^(file|image|category|media|[a-z]{2,3}(-[a-z]+)?|wikt|wiktionary)\s*:", re.I)
_SPACES = re.compile(r"[ \t\u00a0]+")
_EMPTY_PARENS = re.compile(r"\(\s*[;,]?\s*\)")
_LEADING_PUNCT_IN_PARENS = re.compile(r"\(\s*[;,]\s*")


def _drop_balanced(text: str, open_: str, close: str) -> str:
    """Remove every (possibly nested) `open_ ... close` span, e.g. templates and tables."""
    out: list[str] = []
    depth = 0
    i = 0
    n = len(text)
    while i < n:
        if text.startswith(open_, i):
            depth += 1
            i += len(open_)
        elif depth and text.startswith(close, i):
            depth -= 1
            i += len(close)
        else:
            if not depth:
                out.append(text[i])
            i += 1
    return "".join(out)


_TEMPLATE = re.compile(r"\{\{([^{}]*)\}\}")


_TEXT_TEMPLATES = frozenset("nowrap nobr small smaller em lang transl mvar math".split())


def _template_text(m: re.Match) -> str:
    """Keep the words a reader sees for the few inline templates that carry prose
    (quantities, foreign terms, no-wrap spans); every other template is dropped."""
    name, *args = [a.strip() for a in m.group(1).split("|")]
    args = [a for a in args if "=" not in a]
    key = name.lower()
    if key in ("convert", "cvt") and len(args) >= 2:
        return f"{args[0]} {args[1]}" if args[1] not in ("-", "to", "and") else " ".join(args[:4])
    if key in _TEXT_TEMPLATES and args:
        return args[-1]
    if key.startswith("lang-") and args:
        return args[0]
    return ""


def _expand_templates(text: str) -> str:
    for _ in range(8):  # innermost first; real articles nest a few levels deep
        new = _TEMPLATE.sub(_template_text, text)
        if new == text:
            break
        text = new
    return _drop_balanced(text, "{{", "}}")  # unbalanced leftovers


def _resolve_links(text: str) -> str:
    """[[target|label]] -> label, [[target]] -> target; file/category/interwiki links dropped.

    Links nest (a file caption holds links), so this walks brackets from the inside out."""
    inner = re.compile(r"\[\[([^\[\]]*)\]\]")

    def repl(m: re.Match) -> str:
        body = m.group(1)
        target, _, label = body.partition("|")
        if _NON_ARTICLE_LINK.match(target.strip()):
            return ""
        return (label or target).strip()  # a label may hold a template: keep its "|"s

    for _ in range(5):  # nesting is at most a few levels deep
        new = inner.sub(repl, text)
        if new == text:
            break
        text = new
    return text


def strip_wiki_markup(wikitext: str) -> list[str]:
    """Plain prose paragraphs from MediaWiki markup: only running text survives.

    Lists, tables, headings, templates, references and file captions are dropped, because
    the pretraining corpus and the text tasks want sentences, not fragments."""
    text = html.unescape(wikitext)  # the dump double-escapes (&amp;nbsp;)
    text = _COMMENT.sub("", text)
    text = _REF.sub("", text)
    text = _BLOCK_TAGS.sub("", text)
    text = _resolve_links(text)  # first: a link's "|" would split a template's arguments
    text = _expand_templates(text)
    text = _drop_balanced(text, "{|", "|}")
    text = _EXTLINK.sub(lambda m: m.group(1) or "", text)
    text = _BARE_URL.sub("", text)
    text = _TAG.sub("", text)
    text = _HEADING.sub("\n", text)
    text = _BOLD_ITALIC.sub("", text)
    paragraphs = []
    for block in re.split(r"\n\s*\n", text):
        lines = [ln for ln in block.split("\n")
                 if ln.strip() and ln.lstrip()[0] not in "*#:;|!{}[]=<"]
        para = _SPACES.sub(" ", " ".join(ln.strip() for ln in lines)).strip()
        para = _EMPTY_PARENS.sub("", para)
        para = _LEADING_PUNCT_IN_PARENS.sub("(", para)
        para = re.sub(r" +([,.;:])", r"\1", para)
        para = _SPACES.sub(" ", para).strip()
        if len(para.split()) >= 12 and para[-1] in ".!?\"')":
            paragraphs.append(para)
    return paragraphs


@functools.lru_cache(maxsize=1)
def wikipedia_articles() -> tuple[Article, ...]:
    """Main-namespace, non-redirect articles of gensim's shortened English dump, in order."""
    path = gensim_test_file(WIKI_DUMP)
    articles = []
    try:
        with bz2.open(path) as f:
            for _, el in ET.iterparse(f):
                if not el.tag.endswith("}page"):
                    continue
                ns_uri = el.tag[:-len("page")]
                title = el.findtext(ns_uri + "title") or ""
                namespace = el.findtext(ns_uri + "ns")
                redirect = el.find(ns_uri + "redirect") is not None
                text = el.findtext(f"{ns_uri}revision/{ns_uri}text") or ""
                el.clear()
                if namespace != "0" or redirect or text.lstrip().lower().startswith("#redirect"):
                    continue
                paragraphs = strip_wiki_markup(text)
                if paragraphs:
                    articles.append(Article(title, tuple(paragraphs)))
    except (OSError, EOFError, ET.ParseError) as e:
        raise DataError(f"{path} is not a readable bz2 MediaWiki dump: {e}") from e
    return tuple(articles)


# ---------------------------------------------------------------------------------------------
# Lee news corpus


@functools.lru_cache(maxsize=1)
def lee_documents() -> tuple[str, ...]:
    """The Lee corpus news stories: 300 background documents, then the 50 evaluation ones."""
    docs: list[str] = []
    seen: set[str] = set()
    for name in ("lee_background.cor", "lee.cor"):
        path = gensim_test_file(name)
        # the files are Latin-1 era text (pound signs as 0xA3), so cp1252, as for pang_lee
        for line in path.read_text(encoding="cp1252").splitlines():
            doc = _SPACES.sub(" ", line).strip()
            if doc and doc not in seen:
                seen.add(doc)
                docs.append(doc)
    return tuple(docs)


# ---------------------------------------------------------------------------------------------
# Word lists with labels


@functools.lru_cache(maxsize=1)
def analogy_pairs() -> dict[str, tuple[tuple[str, str], ...]]:
    """questions-words.txt as relation -> distinct (a, b) pairs, in file order.

    Each analogy line "a b c d" states that (a, b) and (c, d) stand in the same relation."""
    path = gensim_test_file("questions-words.txt")
    out: dict[str, list[tuple[str, str]]] = {}
    current = None
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith(":"):
            current = line[1:].strip()
            out.setdefault(current, [])
            continue
        words = line.lower().split()
        if not words:
            continue
        if current is None or len(words) != 4:
            raise DataError(f"{path}:{lineno}: expected 'a b c d' under a ': category' line")
        for pair in ((words[0], words[1]), (words[2], words[3])):
            if pair not in out[current]:
                out[current].append(pair)
    return {k: tuple(v) for k, v in out.items()}


def word_similarity(name: str) -> tuple[tuple[str, str, float], ...]:
    """wordsim353.tsv or simlex999.txt as (word1, word2, mean human score)."""
    path = gensim_test_file(name)
    rows = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        cols = line.split("\t")
        try:
            rows.append((cols[0].strip().lower(), cols[1].strip().lower(), float(cols[2])))
        except (IndexError, ValueError) as e:
            raise DataError(f"{path}:{lineno}: expected 'word1<TAB>word2<TAB>score'") from e
    return tuple(rows)


@functools.lru_cache(maxsize=1)
def pang_lee_sentences() -> tuple[tuple[str, str], ...]:
    """The 200 labelled movie-review sentences as (text, "positive"|"negative")."""
    path = gensim_test_file("pang_lee_polarity.cor")
    labels = {"__label__pos": "positive", "__label__neg": "negative"}
    rows = []
    for lineno, line in enumerate(path.read_text(encoding="cp1252").splitlines(), 1):
        if not line.strip():
            continue
        tag, _, text = line.partition(" ")
        if tag not in labels:
            raise DataError(f"{path}:{lineno}: unknown label {tag!r}")
        rows.append((_SPACES.sub(" ", text).strip(), labels[tag]))
    return tuple(rows)


@functools.lru_cache(maxsize=1)
def vader_lexicon() -> dict[str, float]:
    """VADER's entries (words, slang, emoticons) -> mean human valence in [-4, 4]."""
    path = package_file("vaderSentiment", "vader_lexicon.txt")
    out = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        cols = line.split("\t")
        if len(cols) < 2:
            continue
        try:
            out[cols[0]] = float(cols[1])
        except ValueError as e:
            raise DataError(f"{path}:{lineno}: valence {cols[1]!r} is not a number") from e
    return out


@functools.lru_cache(maxsize=1)
def textblob_sentiment() -> dict[str, tuple[float, float]]:
    """Adjective -> (polarity, subjectivity), averaged over its senses as TextBlob does."""
    path = package_file("textblob", "en", "en-sentiment.xml")
    sums: dict[str, list[float]] = {}
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise DataError(f"{path} is not valid XML: {e}") from e
    for w in root.iter("word"):
        form = (w.get("form") or "").lower()
        if not form or w.get("pos") != "JJ":
            continue
        acc = sums.setdefault(form, [0.0, 0.0, 0.0])
        acc[0] += float(w.get("polarity", 0))
        acc[1] += float(w.get("subjectivity", 0))
        acc[2] += 1
    return {k: (p / n, s / n) for k, (p, s, n) in sums.items()}


@functools.lru_cache(maxsize=1)
def textblob_pos_lexicon() -> dict[str, str]:
    """Brill's lexicon as shipped by TextBlob: word -> its most frequent Penn Treebank tag."""
    path = package_file("textblob", "en", "en-lexicon.txt")
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith(";;;"):
            continue
        cols = line.split()
        if len(cols) == 2:
            out[cols[0]] = cols[1]
    return out


@functools.lru_cache(maxsize=1)
def word_frequencies() -> dict[str, int]:
    """TextBlob's spelling-corrector counts (public-domain books + frequency lists)."""
    path = package_file("textblob", "en", "en-spelling.txt")
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith(";;;"):
            continue
        cols = line.split()
        if len(cols) == 2 and cols[1].isdigit():
            out[cols[0]] = int(cols[1])
    return out
