"""How a member's tokenizer meets the data: per split, the tokens per text, the share of them that are
the unknown token, and the share of texts cut at `max_length`.

A pretrained vocabulary can fit the task's text badly and nothing else says so: Korean reviews through
an uncased English WordPiece come out as jamo and `[UNK]` tokens, and a long review loses its end at
`max_length`. The dry run measures every split with each member's tokenizer (once per tokenizer,
`max_length` and data in a process), `validate` prints it, `apply` stores it with the run (table
`token_stats`) and `runner report` shows it; `warnings` names what is above `UNKNOWN_WARN` or
`TRUNCATED_WARN`.

Texts are measured whole, before truncation: `tokens` counts the text's own tokens (no `[CLS]` or
`[SEP]`), and a text is truncated when it and the special tokens are longer than `max_length`.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import asdict, dataclass

from runner.data.tokenized import tokenizer_fingerprint

UNKNOWN_WARN = 0.01  # a share of tokens that are the unknown token above which the dry run warns
TRUNCATED_WARN = 0.05  # a share of texts cut at max_length above which the dry run warns
_MEMO: OrderedDict = OrderedDict()  # (tokenizer fingerprint, data, max_length) -> stats: sweeps dry-run often
_MEMO_SIZE = 16


@dataclass(frozen=True)
class SplitTokens:
    """One split through one tokenizer. `unknown` is None for a tokenizer without an unknown token
    (byte-level BPE never needs one)."""

    split: str
    max_length: int
    texts: int
    tokens: int
    unknown: int | None
    texts_with_unknown: int | None
    truncated: int
    longest: int

    @property
    def tokens_per_text(self) -> float:
        return self.tokens / self.texts if self.texts else 0.0

    @property
    def unknown_rate(self) -> float | None:
        return None if self.unknown is None else (self.unknown / self.tokens if self.tokens else 0.0)

    @property
    def truncated_share(self) -> float:
        return self.truncated / self.texts if self.texts else 0.0

    def as_row(self) -> dict:
        return asdict(self)


def measure(tokenizer, splits: dict[str, list[str]], max_length: int, key: str | None = None) -> list[SplitTokens]:
    """Every split of `splits` (name -> texts) through `tokenizer`; `key` names the data for the
    in-process memo (with the tokenizer's fingerprint), None: no memo."""
    fingerprint = tokenizer_fingerprint(tokenizer) if key is not None else None
    memo_key = (fingerprint, key, max_length) if fingerprint is not None else None
    if memo_key is not None and memo_key in _MEMO:
        _MEMO.move_to_end(memo_key)
        return _MEMO[memo_key]
    out = [_split(tokenizer, name, texts, max_length) for name, texts in splits.items()]
    if memo_key is not None:
        _MEMO[memo_key] = out
        while len(_MEMO) > _MEMO_SIZE:
            _MEMO.popitem(last=False)
    return out


def _split(tokenizer, name: str, texts: list[str], max_length: int) -> SplitTokens:
    unk = tokenizer.unk_token_id if getattr(tokenizer, "unk_token", None) is not None else None
    lengths, content, unknown, with_unknown = [], 0, 0, 0
    for ids, special in _encodings(tokenizer, texts):
        lengths.append(len(ids))
        own = [i for i, s in zip(ids, special) if not s]
        content += len(own)
        if unk is not None:
            n = own.count(unk)
            unknown += n
            with_unknown += n > 0
    return SplitTokens(name, max_length, len(texts), content, unknown if unk is not None else None,
                       with_unknown if unk is not None else None, sum(n > max_length for n in lengths),
                       max(lengths, default=0))


def _encodings(tokenizer, texts: list[str], batch: int = 2048):
    """(ids, special-token mask) of each text, whole. A fast tokenizer is measured through a copy of its
    backend with truncation and padding off, so the tokenizer itself (and the files it saves) stay as
    they are; a slow one through its own call, which leaves nothing set."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        from tokenizers import Tokenizer

        copy = Tokenizer.from_str(backend.to_str())
        copy.no_truncation()
        copy.no_padding()
        for i in range(0, len(texts), batch):
            for enc in copy.encode_batch(list(texts[i:i + batch]), add_special_tokens=True):
                yield enc.ids, enc.special_tokens_mask
        return
    for i in range(0, len(texts), batch):
        enc = tokenizer(list(texts[i:i + batch]), truncation=False, return_special_tokens_mask=True)
        yield from zip(enc["input_ids"], enc["special_tokens_mask"])


def warnings(member: str, stats: list[SplitTokens], unknown_token: str = "[UNK]") -> list[str]:
    """A line per problem of `member`'s tokenizer over every split: the unknown token above
    `UNKNOWN_WARN` of the tokens, texts cut at max_length above `TRUNCATED_WARN`."""
    texts = sum(s.texts for s in stats)
    tokens = sum(s.tokens for s in stats)
    out = []
    known = [s for s in stats if s.unknown is not None]
    if known and tokens:
        unknown = sum(s.unknown for s in known)
        rate = unknown / sum(s.tokens for s in known) if sum(s.tokens for s in known) else 0.0
        if rate > UNKNOWN_WARN:
            having = sum(s.texts_with_unknown for s in known) / sum(s.texts for s in known)
            out.append(f"{member}: {rate:.1%} of the tokens are {unknown_token} ({_per_split(stats, 'unknown_rate')}), "
                       f"in {having:.0%} of the texts: the tokenizer's vocabulary does not cover this text "
                       "(another language or script?), and the model sees nothing of those words")
    truncated = sum(s.truncated for s in stats)
    if texts and truncated / texts > TRUNCATED_WARN:
        longest = max(s.longest for s in stats)
        out.append(f"{member}: {truncated / texts:.1%} of the texts are longer than max_length {stats[0].max_length} "
                   f"tokens and cut ({_per_split(stats, 'truncated_share')}; the longest has {longest}): raise "
                   "[data] max_length, or accept that the model never sees their ends")
    return out


def _per_split(stats: list[SplitTokens], what: str) -> str:
    return ", ".join(f"{s.split} {getattr(s, what):.1%}" for s in stats if getattr(s, what) is not None)


def summary(member: str, stats: list[SplitTokens], unknown_token: str = "[UNK]") -> str:
    """One line of `validate`'s summary: tokens per text, the unknown token's share, texts cut."""
    texts = sum(s.texts for s in stats) or 1
    tokens = sum(s.tokens for s in stats)
    known = [s for s in stats if s.unknown is not None]
    unk = (f"{sum(s.unknown for s in known) / max(sum(s.tokens for s in known), 1):.2%} {unknown_token}"
           if known else f"no {unknown_token} token")
    cut = sum(s.truncated for s in stats) / texts
    return (f"{member}: {tokens / texts:.1f} tokens per text (longest {max(s.longest for s in stats)}), {unk}, "
            f"{cut:.1%} cut at max_length {stats[0].max_length} ({', '.join(s.split for s in stats)})")
