"""How long are sequences with the scratch tokenizers, and how many texts are cut at `max_length`?

For the synthetic data of the quickstart (3000 reviews, seed 13, valid and test 0.15 each, split by
`runner.data.prepare.prepare` as runner splits it) in English and Korean, each tokenizer kind of the scratch
backbone is trained on the training split with the quickstart's options (vocab_size 8000, lowercase)
and measured on the training and the test split:

- `words`: what runner's BERT vocabulary was before (special tokens, every character, the most
  frequent whole words); `wordpiece`: the learned subword vocabulary that replaced it; `bpe`:
  RoBERTa's byte-level BPE (unchanged), for reference;
- mean tokens per text ([CLS]/[SEP] or <s>/</s> included, before truncation), the share of texts longer
  than `max_length` (64, the quickstart's: what truncation cuts), the share of tokens that are the
  unknown token, and the vocabulary size.

`--file PATH` (repeatable) adds a corpus of one text per line, e.g. real text: its first 85% of lines
train the tokenizers and the rest is measured as "test".

    python bench/tokenizer.py
    python bench/tokenizer.py --file reviews.txt --max-length 64

The last line of output is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from types import SimpleNamespace

KINDS = ("words", "wordpiece", "bpe")


def synthetic_splits(language: str, size: int, seed: int) -> dict[str, list[str]]:
    from runner.data import synthetic
    from runner.data.prepare import prepare
    from runner.plugins.contexts import RawDataset

    texts, labels = synthetic.generate(size, seed=seed, language=language)
    raw = RawDataset(splits={"train": [{"text": x, "label": int(y)} for x, y in zip(texts, labels)]},
                     label_names=list(synthetic.LABEL_NAMES))
    data = prepare(SimpleNamespace(source="synthetic", valid=0.15, test=0.15, labels=None, text_column="text",
                                   label_column="label"), raw, seed)
    return {name: list(split.texts) for name, split in data.splits.items()}


def measure(tokenizer, texts: list[str], max_length: int) -> dict:
    ids = tokenizer(texts, truncation=False)["input_ids"]
    n_tokens = sum(len(x) for x in ids)
    unk = tokenizer.unk_token_id
    return {"mean_tokens": n_tokens / len(ids),
            "truncated_share": sum(len(x) > max_length for x in ids) / len(ids),
            "unk_share": sum(t == unk for x in ids for t in x) / n_tokens}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="sequence lengths of the scratch tokenizers, old vocabulary vs new")
    ap.add_argument("--size", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--vocab-size", type=int, default=8000)
    ap.add_argument("--file", action="append", default=[], help="a corpus, one text per line")
    opts = ap.parse_args(argv)

    from rich.console import Console
    from rich.table import Table
    from transformers.utils import logging as hf_logging

    from runner.data.tokenization import train_tokenizer

    hf_logging.set_verbosity_error()  # lengths beyond max_length are what is measured, not a mistake

    corpora = {f"synthetic {lang}": synthetic_splits(lang, opts.size, opts.seed) for lang in ("en", "ko")}
    for f in opts.file:
        lines = [x for x in Path(f).read_text(encoding="utf-8").splitlines() if x.strip()]
        cut = int(len(lines) * 0.85)
        corpora[Path(f).name] = {"train": lines[:cut], "test": lines[cut:]}
    rows = []
    for name, splits in corpora.items():
        for kind in KINDS:
            tok = train_tokenizer(splits["train"], kind, vocab_size=opts.vocab_size, max_length=opts.max_length)
            for split in ("train", "test"):
                rows.append({"corpus": name, "kind": kind, "split": split, "texts": len(splits[split]),
                             "vocab": len(tok), **measure(tok, splits[split], opts.max_length)})
    table = Table(title=f"scratch tokenizers · vocab_size {opts.vocab_size} · truncated at max_length {opts.max_length}")
    for col in ("corpus", "split", "tokenizer", "vocabulary", "mean tokens", "truncated", "unknown tokens"):
        table.add_column(col, justify="left" if col in ("corpus", "split", "tokenizer") else "right")
    for r in rows:
        table.add_row(r["corpus"], f"{r['split']} ({r['texts']})", r["kind"], str(r["vocab"]),
                      f"{r['mean_tokens']:.2f}", f"{100 * r['truncated_share']:.2f} %", f"{100 * r['unk_share']:.2f} %")
    Console(width=max(Console().width, 120)).print(table)
    print(json.dumps({"bench": "tokenizer", "max_length": opts.max_length, "vocab_size": opts.vocab_size,
                      "rows": rows}))


if __name__ == "__main__":
    main()
