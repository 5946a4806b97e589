"""runner.data.token_stats: how a tokenizer meets the data, counted by hand on a words tokenizer
(a word it never saw is one [UNK]), and the warnings above 1% unknown tokens or 5% of texts cut."""

from __future__ import annotations

import pytest

from runner.data import token_stats
from runner.data.tokenization import train_tokenizer

TRAIN = ["the film was good", "the film was bad"]
TEST = ["the film was 좋다", "the film was the film was the film was"]


@pytest.fixture(scope="module")
def tok():
    t = train_tokenizer(TRAIN * 5, "words", vocab_size=100, max_length=6)
    t.backend_tokenizer.enable_truncation(4)  # what a pretrained tokenizer.json may carry: measured past it
    return t


def test_counts_per_split_whole_and_by_hand(tok):
    train, test = token_stats.measure(tok, {"train": TRAIN, "test": TEST}, max_length=6)
    # texts' own tokens (no [CLS]/[SEP]); cut: longer than 6 with the 2 special tokens
    assert train == token_stats.SplitTokens("train", 6, texts=2, tokens=8, unknown=0, texts_with_unknown=0,
                                            truncated=0, longest=6)
    assert test == token_stats.SplitTokens("test", 6, texts=2, tokens=13, unknown=1, texts_with_unknown=1,
                                           truncated=1, longest=11)
    assert test.unknown_rate == pytest.approx(1 / 13) and test.truncated_share == 0.5
    assert tok.backend_tokenizer.truncation["max_length"] == 4  # the tokenizer itself is left as it was


def test_warnings_name_the_unknown_rate_and_the_cut_share_per_split(tok):
    stats = token_stats.measure(tok, {"train": TRAIN, "test": TEST}, max_length=6)
    unknown, cut = token_stats.warnings("m", stats)
    assert unknown.startswith("m: 4.8% of the tokens are [UNK] (train 0.0%, test 7.7%), in 25% of the texts")
    assert cut.startswith("m: 25.0% of the texts are longer than max_length 6 tokens and cut "
                          "(train 0.0%, test 50.0%; the longest has 11)")
    assert token_stats.warnings("m", stats[:1]) == []  # 0% and 0%: nothing to say
    assert token_stats.summary("m", stats) == "m: 5.2 tokens per text (longest 11), 4.76% [UNK], 25.0% cut at " \
                                              "max_length 6 (train, test)"


def test_the_thresholds_are_strict_shares():
    at = token_stats.SplitTokens("train", 8, texts=100, tokens=1000, unknown=10, texts_with_unknown=10, truncated=5,
                                 longest=9)
    assert token_stats.warnings("m", [at]) == []  # exactly 1% and 5%: not above
    above = token_stats.SplitTokens("train", 8, texts=100, tokens=1000, unknown=11, texts_with_unknown=11,
                                    truncated=6, longest=9)
    assert len(token_stats.warnings("m", [above])) == 2


def test_a_tokenizer_without_an_unknown_token_says_so():
    none = token_stats.SplitTokens("train", 8, texts=2, tokens=10, unknown=None, texts_with_unknown=None,
                                   truncated=0, longest=7)
    assert token_stats.warnings("m", [none]) == []
    assert "no [UNK] token" in token_stats.summary("m", [none])
