"""Tests for the synthetic 4-class movie-review generator."""

import collections
import math
import re
import sys
from pathlib import Path

import pytest

try:
    from runner.data import synthetic
except ImportError:  # package not installed: use the source tree
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
    from runner.data import synthetic

generate = synthetic.generate
LANGS = ["en", "ko"]


def _tokens(text):
    return re.findall(r"\w+|[^\w\s]", text.lower())


def _naive_bayes_accuracy(language, seed):
    """Multinomial naive Bayes on word counts: train on 3000, test on 1000."""
    texts, labels = generate(4000, seed=seed, language=language)
    counts = [collections.Counter() for _ in range(4)]
    prior = collections.Counter(labels[:3000])
    for text, label in zip(texts[:3000], labels[:3000]):
        counts[label].update(_tokens(text))
    vocab = len(set().union(*counts))
    totals = [sum(c.values()) for c in counts]
    correct = 0
    for text, label in zip(texts[3000:], labels[3000:]):
        words = _tokens(text)
        scores = [math.log(prior[c]) + sum(math.log((counts[c][w] + 1) / (totals[c] + vocab)) for w in words)
                  for c in range(4)]
        correct += max(range(4), key=scores.__getitem__) == label
    return correct / 1000


def test_label_names():
    assert synthetic.LABEL_NAMES == ["strong_negative", "weak_negative", "weak_positive", "strong_positive"]


@pytest.mark.parametrize("language", LANGS)
def test_deterministic(language):
    a = generate(500, seed=7, language=language)
    assert a == generate(500, seed=7, language=language)
    assert a[0] != generate(500, seed=8, language=language)[0]


@pytest.mark.parametrize("language", LANGS)
def test_shapes_and_no_empty_texts(language):
    texts, labels = generate(1000, seed=1, language=language)
    assert len(texts) == len(labels) == 1000
    assert set(labels) == {0, 1, 2, 3}
    assert all(isinstance(t, str) and t.strip() for t in texts)
    lengths = [len(t.split()) for t in texts]
    assert min(lengths) >= 5 and max(lengths) <= 35
    assert generate(0, language=language) == ([], [])


@pytest.mark.parametrize("language", LANGS)
def test_class_shares(language):
    _, labels = generate(4000, seed=3, language=language)
    counts = collections.Counter(labels)
    for cls, share in enumerate((0.30, 0.12, 0.25, 0.33)):
        assert abs(counts[cls] / 4000 - share) <= 0.03
    assert 0.10 <= counts[1] / 4000 <= 0.15


def test_custom_class_shares():
    _, labels = generate(2000, seed=4, class_shares=(0.25, 0.25, 0.25, 0.25))
    counts = collections.Counter(labels)
    assert all(abs(counts[c] / 2000 - 0.25) <= 0.03 for c in range(4))


def test_korean_is_precomposed_hangul():
    texts, _ = generate(500, seed=2, language="ko")
    for text in texts:
        assert any("\uac00" <= ch <= "\ud7a3" for ch in text), text
        assert not any("\u1100" <= ch <= "\u11ff" for ch in text), text


def test_unknown_language_raises():
    with pytest.raises(ValueError, match=r"en.*ko"):
        generate(10, language="fr")


@pytest.mark.parametrize("language", LANGS)
def test_texts_are_varied(language):
    texts, _ = generate(2000, seed=5, language=language)
    assert len(set(texts)) / len(texts) >= 0.8


@pytest.mark.parametrize("language", LANGS)
def test_no_giveaway_token(language):
    texts, labels = generate(2000, seed=6, language=language)
    token_sets = [set(_tokens(t)) for t in texts]
    for cls in range(4):
        inside = [s for s, l in zip(token_sets, labels) if l == cls]
        outside = [s for s, l in zip(token_sets, labels) if l != cls]
        for word in set.intersection(*inside):
            assert sum(word in s for s in outside) / len(outside) > 0.5, (cls, word)


@pytest.mark.parametrize("language", LANGS)
def test_learnable_but_not_trivial(language):
    accuracy = _naive_bayes_accuracy(language, seed=0)
    assert 0.45 < accuracy < 0.92, accuracy
