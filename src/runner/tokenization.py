"""Training a small tokenizer from the training texts, for backbones built from scratch.

Two flavours, matching the two scratch architectures:

- ``wordpiece``: BERT-style ([PAD]=0, [UNK], [CLS], [SEP], [MASK]; ``[CLS] a [SEP] b [SEP]``).
- ``bpe``: RoBERTa-style byte-level BPE (<s>=0, <pad>=1, </s>=2, <unk>=3, <mask>=4; ``<s> a </s></s> b </s>``).

Accents are never stripped: stripping decomposes text to NFD first, which shreds every Korean
Hangul syllable into its jamo (U+1100-U+11FF) and makes the vocabulary useless for Korean reviews.
Text is NFC-normalised instead, so composed and decomposed input give the same tokens.

The result is a ``transformers.PreTrainedTokenizerFast`` wrapping the trained ``tokenizers.Tokenizer``;
it saves with ``save_pretrained`` and loads back with ``AutoTokenizer.from_pretrained``.
"""

from __future__ import annotations

import hashlib
from collections import Counter, OrderedDict
from typing import Iterable, Literal

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

WORDPIECE_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
BPE_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]


def _batches(texts: list[str], size: int = 1000) -> Iterable[list[str]]:
    # Batches keep the Rust trainer busy without building one big Python list of copies.
    for i in range(0, len(texts), size):
        yield texts[i:i + size]


def _wordpiece(texts: list[str], vocab_size: int, lowercase: bool) -> Tokenizer:
    normalizer = normalizers.Sequence([
        normalizers.NFC(),
        # strip_accents=False explicitly: the default (None) follows `lowercase`, i.e. strips accents
        # whenever lowercasing, and that would shred Hangul into jamo.
        normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                   strip_accents=False, lowercase=lowercase),
    ])
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok = Tokenizer(models.WordPiece(_wordpiece_vocab(texts, normalizer, pre_tokenizer, vocab_size),
                                     unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.WordPiece(prefix="##")
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return tok


def _wordpiece_vocab(texts, normalizer, pre_tokenizer, vocab_size: int) -> dict[str, int]:
    """Special tokens, every character (alone and as a ``##`` continuation), then the most frequent
    words, ties broken alphabetically.

    Built here rather than by ``tokenizers.trainers.WordPieceTrainer`` because that trainer breaks
    ties between equally frequent merges in hash-map order, which changes from process to process:
    the same spec and seed then gave a different vocabulary, model and numbers on every run.
    """
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(w for w, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
    chars = sorted({c for w in counts for c in w})
    vocab = WORDPIECE_SPECIALS + chars + ["##" + c for c in chars]
    budget = max(vocab_size - len(vocab), 0)
    words = sorted((w for w in counts if len(w) > 1), key=lambda w: (-counts[w], w))[:budget]
    return {token: i for i, token in enumerate(vocab + words)}


def _bpe(texts: list[str], vocab_size: int, lowercase: bool) -> Tokenizer:
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    steps = [normalizers.NFC()] + ([normalizers.Lowercase()] if lowercase else [])
    tok.normalizer = normalizers.Sequence(steps)
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=1, special_tokens=BPE_SPECIALS,
                                  # every byte is in the alphabet, so no text is ever <unk>
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(_batches(texts), trainer=trainer, length=len(texts))
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


def train_tokenizer(texts: list[str], kind: Literal["wordpiece", "bpe"], vocab_size: int = 8000,
                    lowercase: bool = True, max_length: int = 128) -> PreTrainedTokenizerFast:
    """Train a ``kind`` tokenizer on ``texts`` and wrap it as a Hugging Face fast tokenizer (trained
    once per process for the same texts and options)."""
    if not texts:
        raise ValueError("cannot train a tokenizer on no texts")
    if kind == "wordpiece":
        train = _wordpiece
        specials = dict(pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
                        sep_token="[SEP]", mask_token="[MASK]")
    elif kind == "bpe":
        train = _bpe
        specials = dict(bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>",
                        cls_token="<s>", sep_token="</s>", mask_token="<mask>")
    else:
        raise ValueError(f"unknown tokenizer kind {kind!r}: expected 'wordpiece' or 'bpe'")
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
