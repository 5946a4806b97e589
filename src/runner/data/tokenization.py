"""Training a small tokenizer from the training texts, for backbones built from scratch.

Three kinds (the `scratch` backbone's `tokenizer` option):

- ``wordpiece``: BERT-style WordPiece with learned subwords ([PAD]=0, [UNK], [CLS], [SEP], [MASK];
  ``[CLS] a [SEP] b [SEP]``): a word outside the vocabulary splits into the longest pieces it has
  (``unbelievably`` -> ``unbeliev ##ably``), not into single characters.
- ``bpe``: RoBERTa-style byte-level BPE (<s>=0, <pad>=1, </s>=2, <unk>=3, <mask>=4; ``<s> a </s></s> b </s>``).
- ``words``: the vocabulary runner used before ``wordpiece`` (kept so that runs trained with it can
  be reproduced): the special tokens, every character, then the most frequent whole words; any
  other word falls apart into single characters.

Determinism. The same texts and options give a byte-identical tokenizer in every process and on
every machine. `tokenizers`' `BpeTrainer` sorts its alphabet by code point and breaks ties between
equally frequent merges by the ids of the pair, so it is deterministic *unless* it adds tokens of its
own while reading the words: `continuing_subword_prefix` (``##``) and `end_of_word_suffix` tokens get
their ids in the order of a Rust `HashMap`, which is seeded afresh in every process. That is why
`WordPieceTrainer` (a `BpeTrainer` with the ``##`` prefix) gives a different vocabulary in every
process. So ``wordpiece`` is trained as a plain BPE in which every word starts with a marker
character (``▁``, as sentencepiece does), and its learned tokens are turned into a WordPiece
vocabulary here: ``▁abc`` is the word-initial ``abc``, any other token ``x`` is the continuation
``##x``. One case is still order-dependent in `BpeTrainer`: a merge that forms a token which exists
already (two ways of spelling the same string) leaves two queue entries for the same pair, popped
in hash order. `_deterministic_merges` keeps the merges before the first such one, which are the
same in every process (it has not happened on any corpus tried; the check makes it safe if it does).

Accents are never stripped: stripping decomposes text to NFD first, which shreds every Korean
Hangul syllable into its jamo (U+1100-U+11FF) and makes the vocabulary useless for Korean reviews.
Text is NFC-normalised instead, so composed and decomposed input give the same tokens.

The result is a ``transformers.PreTrainedTokenizerFast`` wrapping the trained ``tokenizers.Tokenizer``;
it saves with ``save_pretrained`` and loads back with ``AutoTokenizer.from_pretrained``.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, OrderedDict
from typing import Iterable, Literal

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

WORDPIECE_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
BPE_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
KINDS = ("wordpiece", "bpe", "words")
WORD_START = "\u2581"  # marks the start of a word while a WordPiece vocabulary is learned as BPE
# as WordPieceTrainer by default: every pair seen may merge. (A floor of 2 left held-out Korean
# statute text 5% longer, bench/tokenizer.py: fewer learned pieces to split unseen forms into.)
MIN_FREQUENCY = 1


def _batches(texts: list[str], size: int = 1000) -> Iterable[list[str]]:
    # Batches keep the Rust trainer busy without building one big Python list of copies.
    for i in range(0, len(texts), size):
        yield texts[i:i + size]


def _bert_normalizer(lowercase: bool):
    return normalizers.Sequence([
        normalizers.NFC(),
        # strip_accents=False explicitly: the default (None) follows `lowercase`, i.e. strips accents
        # whenever lowercasing, and that would shred Hangul into jamo.
        normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                   strip_accents=False, lowercase=lowercase),
    ])


def _deterministic_merges(merges: list, alphabet: Iterable[str]) -> list[tuple[str, str]]:
    """The trained merges (in rank order) before the first one that forms a token that already
    exists: up to there `BpeTrainer`'s choices do not depend on hash-map order (module docstring)."""
    seen = set(alphabet)
    kept = []
    for merge in merges:
        a, b = merge.split(" ", 1) if isinstance(merge, str) else merge
        if a + b in seen:
            break
        seen.add(a + b)
        kept.append((a, b))
    return kept


def _wordpiece(texts: list[str], vocab_size: int, lowercase: bool) -> Tokenizer:
    normalizer = _bert_normalizer(lowercase)
    # Learn the units as BPE, word starts marked by WORD_START (a character in the alphabet, so no
    # token is added in hash-map order); the marker itself is turned into a space in the texts.
    learner = Tokenizer(models.BPE())
    learner.normalizer = normalizers.Sequence([normalizers.Replace(WORD_START, " "), normalizer])
    learner.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.BertPreTokenizer(),
        pre_tokenizers.Metaspace(replacement=WORD_START, prepend_scheme="always", split=False),
    ])
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=MIN_FREQUENCY, show_progress=False)
    learner.train_from_iterator(_batches(texts), trainer=trainer, length=len(texts))
    learned = json.loads(learner.to_str())["model"]
    alphabet = [t for t in learned["vocab"] if len(t) == 1]
    chars = sorted(c for c in alphabet if c != WORD_START)
    vocab = WORDPIECE_SPECIALS + chars + ["##" + c for c in chars]
    known = set(vocab)
    for a, b in _deterministic_merges(learned["merges"], alphabet):
        token = a + b
        piece = token[1:] if token.startswith(WORD_START) else "##" + token
        if piece not in known:  # `▁c`: the word-initial character, already in
            known.add(piece)
            vocab.append(piece)
    return _wordpiece_tokenizer(vocab[:max(vocab_size, len(WORDPIECE_SPECIALS) + 2 * len(chars))], normalizer)


def _words_vocab(texts, normalizer, vocab_size: int) -> list[str]:
    """`words`: special tokens, every character (alone and as a ``##`` continuation), then the most
    frequent words, ties broken alphabetically."""
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(w for w, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
    chars = sorted({c for w in counts for c in w})
    vocab = WORDPIECE_SPECIALS + chars + ["##" + c for c in chars]
    budget = max(vocab_size - len(vocab), 0)
    words = sorted((w for w in counts if len(w) > 1), key=lambda w: (-counts[w], w))[:budget]
    return vocab + words


def _wordpiece_tokenizer(vocab: list[str], normalizer) -> Tokenizer:
    tok = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]",
                                     max_input_chars_per_word=100))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return tok


def _bpe(texts: list[str], vocab_size: int, lowercase: bool) -> Tokenizer:
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    steps = [normalizers.NFC()] + ([normalizers.Lowercase()] if lowercase else [])
    tok.normalizer = normalizers.Sequence(steps)
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    # No prefix or suffix: every token the trainer adds comes from a merge (see the module docstring).
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=1, special_tokens=BPE_SPECIALS,
                                  # every byte is in the alphabet, so no text is ever <unk>
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(_batches(texts), trainer=trainer, length=len(texts))
    state = json.loads(tok.to_str())
    learned = state["model"]
    alphabet = [t for t in learned["vocab"] if len(t) == 1 or t in BPE_SPECIALS]
    kept = _deterministic_merges(learned["merges"], alphabet)
    if len(kept) < len(learned["merges"]):  # never seen so far; cut to the part every process agrees on
        vocab = alphabet + [a + b for a, b in kept]
        learned["vocab"] = {t: learned["vocab"][t] for t in vocab}
        learned["merges"] = [list(m) for m in kept]
        tok = Tokenizer.from_str(json.dumps(state))
    # positional: the keyword names differ between tokenizers releases (cls vs cls_token)
    tok.post_processor = processors.RobertaProcessing(
        ("</s>", tok.token_to_id("</s>")), ("<s>", tok.token_to_id("<s>")),
        trim_offsets=True, add_prefix_space=False,
    )
    return tok


# Trained vocabularies of this process, by content: the dry run and the training of a member, and
# members with the same tokenizer options, train the very same tokenizer; a hit rebuilds it from its
# JSON (`Tokenizer.from_str`), so every caller still gets an object of its own to add tokens to.
_TRAINED: OrderedDict[str, str] = OrderedDict()
_TRAINED_KEEP = 8


def _trained_key(texts: list[str], kind: str, vocab_size: int, lowercase: bool) -> str:
    h = hashlib.sha256(repr((kind, vocab_size, lowercase, len(texts))).encode())
    for t in texts:
        h.update(t.encode("utf-8", "surrogatepass"))
        h.update(b"\x1f")
    return h.hexdigest()


def train_tokenizer(texts: list[str], kind: Literal["wordpiece", "bpe", "words"], vocab_size: int = 8000,
                    lowercase: bool = True, max_length: int = 128) -> PreTrainedTokenizerFast:
    """Train a ``kind`` tokenizer on ``texts`` and wrap it as a Hugging Face fast tokenizer (trained
    once per process for the same texts and options)."""
    if not texts:
        raise ValueError("cannot train a tokenizer on no texts")
    if kind == "wordpiece":
        train = _wordpiece
    elif kind == "words":
        def train(texts, vocab_size, lowercase):
            normalizer = _bert_normalizer(lowercase)
            return _wordpiece_tokenizer(_words_vocab(texts, normalizer, vocab_size), normalizer)
    elif kind == "bpe":
        train = _bpe
    else:
        raise ValueError(f"unknown tokenizer kind {kind!r}: expected one of {', '.join(KINDS)}")
    if kind == "bpe":
        specials = dict(bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>",
                        cls_token="<s>", sep_token="</s>", mask_token="<mask>")
    else:
        specials = dict(pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
                        sep_token="[SEP]", mask_token="[MASK]")
    key = _trained_key(texts, kind, vocab_size, lowercase)
    if key in _TRAINED:
        _TRAINED.move_to_end(key)
        backend = Tokenizer.from_str(_TRAINED[key])
    else:
        backend = train(list(texts), vocab_size, lowercase)
        _TRAINED[key] = backend.to_str()
        while len(_TRAINED) > _TRAINED_KEEP:
            _TRAINED.popitem(last=False)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        model_max_length=max_length,
        padding_side="right",
        truncation_side="right",
        # wordpiece decoding otherwise "cleans up" spaces before punctuation differently from the input
        clean_up_tokenization_spaces=False,
        **specials,
    )
