"""Metrics against outside references: scipy for correlations, hand-worked cases for the rest."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from spot.data import metrics as M
from spot.data import scoring


def test_mcc_binary_equals_phi_coefficient():
    # For binary labels MCC is Pearson's correlation of the 0/1 vectors (the phi coefficient).
    rng = np.random.default_rng(0)
    t = rng.integers(0, 2, 200)
    p = np.where(rng.random(200) < 0.7, t, 1 - t)
    want = stats.pearsonr(p.astype(float), t.astype(float))[0]
    got = M.mcc([str(x) for x in p], [str(x) for x in t])
    assert got == pytest.approx(want, abs=1e-12)


def test_mcc_hand_computed_and_degenerate():
    # TP=3 FN=1 FP=2 TN=4: (12-2)/sqrt(5*4*5*6) = 10/sqrt(600)
    t = ["1"] * 4 + ["0"] * 6
    p = ["1", "1", "1", "0", "1", "1", "0", "0", "0", "0"]
    assert M.mcc(p, t) == pytest.approx(10 / math.sqrt(600))
    assert M.mcc(["1"] * 5, ["1", "0", "1", "0", "1"]) == 0.0  # constant prediction
    # Multi-class (Gorodkin): perfect agreement is 1, a label swap of everything is negative.
    assert M.mcc(list("abcabc"), list("abcabc")) == pytest.approx(1.0)
    assert M.mcc(list("bcabca"), list("abcabc")) < 0


def test_pearson_spearman_match_hand_formulas():
    rng = np.random.default_rng(1)
    x = rng.normal(size=50)
    y = 0.5 * x + rng.normal(size=50)
    xc, yc = x - x.mean(), y - y.mean()
    assert M.pearson(x, y) == pytest.approx(float(xc @ yc / np.sqrt((xc @ xc) * (yc @ yc))))
    rx, ry = stats.rankdata(x), stats.rankdata(y)
    assert M.spearman(x, y) == pytest.approx(float(np.corrcoef(rx, ry)[0, 1]))
    # With ties the Spearman rank correlation uses average ranks.
    a, b = [1, 2, 2, 3, 4], [1, 3, 2, 2, 5]
    assert M.spearman(a, b) == pytest.approx(stats.spearmanr(a, b)[0])
    assert math.isnan(M.pearson([1, 1, 1], [1, 2, 3]))


def test_squad_normalization_em_f1_hand_cases():
    assert M.normalize_answer("The  Eiffel Tower!") == "eiffel tower"
    assert M.exact_match("the Eiffel tower", "Eiffel Tower.") == 1.0
    # pred "eiffel tower paris" vs gold "eiffel tower": P=2/3, R=1 -> F1 = 0.8
    assert M.token_f1("Eiffel Tower, Paris", "the Eiffel Tower") == pytest.approx(0.8)
    assert M.token_f1("a", "the") == 1.0  # both normalize to empty
    assert M.token_f1("Paris", "London") == 0.0
    r = M.squad(["Eiffel Tower", "red"], [["the Eiffel Tower", "tower"], ["blue", "dark red"]])
    assert r["em"] == pytest.approx(0.5)  # max over answers: 1 and 0
    assert r["f1"] == pytest.approx((1.0 + 2 / 3) / 2)  # "red" vs "dark red": P=1, R=1/2


def test_classification_f1_variants():
    t = ["pos", "pos", "neg", "neg", "pos"]
    p = ["pos", "neg", "pos", "neg", "pos"]
    # TP=2 FP=1 FN=1 -> 4/6
    assert M.f1_binary(p, t, "pos") == pytest.approx(2 / 3)
    assert M.macro_f1(p, t, ["pos", "neg"]) == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert M.accuracy(p, t) == pytest.approx(0.6)


def test_multirc_f1a_and_em():
    groups = ["q1", "q1", "q2", "q2", "q3"]
    t = ["True", "False", "True", "True", "False"]
    p = ["True", "False", "True", "False", "False"]
    assert M.multirc_em(p, t, groups) == pytest.approx(2 / 3)  # q2 has one wrong option
    # TP=2 FP=0 FN=1 -> 4/5
    assert M.multirc_f1a(p, t) == pytest.approx(0.8)


def test_rouge_hand_cases():
    assert M.rouge_n("the cat sat", "the cat sat", 1) == 1.0
    # pred [the cat was found], ref [the cat sat]: unigram overlap 2 -> P=2/4 R=2/3 F=4/7
    assert M.rouge_n("The cat was found", "the cat sat", 1) == pytest.approx(4 / 7)
    # bigrams: pred {the cat, cat was, was found}, ref {the cat, cat sat}: 1 -> P=1/3 R=1/2
    assert M.rouge_n("The cat was found", "the cat sat", 2) == pytest.approx(0.4)
    # LCS of [a b c d e] and [a x c y e] is [a c e] = 3 -> F = 3/5
    assert M.rouge_l("a b c d e", "a x c y e") == pytest.approx(0.6)
    r = M.rouge(["a b c d e"], [["q r s", "a x c y e"]])  # best reference wins
    assert r["rougeL"] == pytest.approx(0.6)


def test_bleu_hand_computed():
    # hyp 6 tokens vs ref 6 tokens: p1=5/6 p2=3/5 p3=1/4 p4=0/3 -> BLEU 0 without smoothing
    assert M.corpus_bleu(["a b c d e f"], [["a b c x e f"]], tokenize=False) == 0.0
    # An exact match is 1, brevity penalty exp(1 - r/c) when the hypothesis is shorter.
    assert M.corpus_bleu(["a b c d e"], [["a b c d e"]], tokenize=False) == pytest.approx(1.0)
    hyp, ref = "a b c d e f g h", "a b c d e f g h i j"
    p = [1.0, 1.0, 1.0, 1.0]
    want = math.exp(1 - 10 / 8) * math.exp(sum(map(math.log, p)) / 4)
    assert M.corpus_bleu([hyp], [[ref]], tokenize=False) == pytest.approx(want)
    # Pooled counts over the corpus, clipped by the reference counts.
    hyps = ["the the the the cat sat on mat", "a b c d"]
    refs = [["the cat sat on the mat"], ["a b c d"]]
    m = [6 + 4, 3 + 3, 2 + 2, 1 + 1]  # clipped n-gram matches per order
    tot = [8 + 4, 7 + 3, 6 + 2, 5 + 1]
    want = math.exp(sum(math.log(a / b) for a, b in zip(m, tot)) / 4)  # c=12 > r=10: BP 1
    assert M.corpus_bleu(hyps, refs, tokenize=False) == pytest.approx(want)


def test_bleu_agrees_with_nltk():
    nltk_bleu = pytest.importorskip("nltk.translate.bleu_score")
    hyps = ["the quick brown fox jumps over the lazy dog", "a cat sat on the mat today",
            "he read the book because he was interested in world history"]
    refs = [["the fast brown fox jumps over the lazy dog", "a quick brown fox leaps over a dog"],
            ["the cat sat on the mat"],
            ["he was interested in world history because he read the book"]]
    want = nltk_bleu.corpus_bleu([[r.split() for r in rs] for rs in refs],
                                 [h.split() for h in hyps])
    assert M.corpus_bleu(hyps, refs, tokenize=False) == pytest.approx(want, abs=1e-12)


def test_bleu_13a_tokenization_splits_punctuation():
    assert M.bleu_tokenize("Hello, world. It costs 3.50-4 euros!") == [
        "Hello", ",", "world", ".", "It", "costs", "3.50", "-", "4", "euros", "!"]


def test_scoring_scale_average_and_postprocessing():
    out = scoring.compute(("f1", "accuracy"), ["b", "b", "a"], ["b", "a", "a"], [],
                          label_words=("a", "b"))
    assert out["accuracy"] == pytest.approx(100 * 2 / 3)
    assert out["f1"] == pytest.approx(100 * 2 / 3)  # positive class "b": TP1 FP1 FN0
    assert out["score"] == pytest.approx((out["f1"] + out["accuracy"]) / 2)
    # Regression outputs are parsed; unparsable text becomes -1 like T5; NaN scores become 0.
    out = scoring.compute(("pearson", "spearman"), ["1.0", "2.0", "oops"], ["1.0", "2.0", "0.4"],
                          [], postprocessor="float")
    assert out["pearson"] == pytest.approx(100 * stats.pearsonr([1, 2, -1], [1, 2, 0.4])[0])
    flat = scoring.compute(("pearson",), ["1.0", "1.0"], ["1.0", "2.0"], [],
                           postprocessor="float")
    assert flat["pearson"] == 0.0 and flat["score"] == 0.0
    # QA metrics take every gold answer from the examples.
    out = scoring.compute(("squad_em", "squad_f1"), ["tower"], ["the Eiffel Tower"],
                          [{"answers": ["the Eiffel Tower", "Tower"]}])
    assert out["squad_em"] == 100.0


def test_unknown_metric_is_a_clear_error():
    from spot.errors import DataError

    with pytest.raises(DataError, match="unknown metric 'blue'"):
        scoring.canonical_metric("blue")
    assert scoring.canonical_metric("rouge_l") == "rougeL"
