"""A plain Hugging Face `Trainer` script, as a notebook writes one, for the tests of runner.hf.

A tiny BERT (2 layers, hidden 32) with a word-level tokenizer built here from the training texts, the
synthetic reviews split 96/32/32, and a focal loss in a `compute_loss` override (the script's own
objective, which runner must leave untouched).
"""

from __future__ import annotations

from pathlib import Path

import torch

from runner.data import synthetic

LABELS = list(synthetic.LABEL_NAMES)


def make_tokenizer(texts: list[str]):
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = sorted({w for t in texts for w in t.lower().split()})
    vocab = {w: i for i, w in enumerate(special + words)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[
        ("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]", model_max_length=64)


def data(n: int = 160, seed: int = 0) -> dict[str, tuple[list[str], list[int]]]:
    texts, labels = synthetic.generate(n, seed=seed)
    texts = [t.lower() for t in texts]
    a, b = int(n * 0.6), int(n * 0.8)
    return {"train": (texts[:a], labels[:a]), "valid": (texts[a:b], labels[a:b]), "test": (texts[b:], labels[b:])}


class Encoded(torch.utils.data.Dataset):
    def __init__(self, tokenizer, texts, labels):
        self.enc = tokenizer(texts, truncation=True, max_length=64)
        self.labels = labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {"input_ids": self.enc["input_ids"][i], "attention_mask": self.enc["attention_mask"][i],
                "labels": int(self.labels[i])}


def focal_trainer():
    from transformers import Trainer

    class FocalTrainer(Trainer):
        """The notebook's own loss: cross-entropy times (1 - p_y)^2."""

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            labels = inputs.pop("labels")
            outputs = model(**inputs)
            logits = outputs.logits.float()
            ce = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
            p = torch.softmax(logits, -1).gather(1, labels[:, None]).squeeze(1)
            loss = ((1 - p) ** 2 * ce).mean()
            return (loss, outputs) if return_outputs else loss

    return FocalTrainer


def script(work: Path, seed: int, epochs: int = 3, callbacks=(), tokenizer=None):
    """Train the script's model; returns (trainer, splits, data): splits are the encoded valid and test, data the raw (texts, labels)."""
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        DataCollatorWithPadding,
        TrainingArguments,
        set_seed,
    )

    d = data()
    tokenizer = tokenizer or make_tokenizer(d["train"][0])
    set_seed(seed)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, pad_token_id=tokenizer.pad_token_id,
                        num_labels=len(LABELS))
    model = BertForSequenceClassification(config)
    args = TrainingArguments(output_dir=str(work), num_train_epochs=epochs, per_device_train_batch_size=16,
                             per_device_eval_batch_size=32, learning_rate=3e-3, seed=seed, eval_strategy="epoch",
                             save_strategy="epoch", logging_strategy="epoch", save_total_limit=2, report_to="none",
                             disable_tqdm=True, use_cpu=True)
    splits = {name: Encoded(tokenizer, *d[name]) for name in ("valid", "test")}
    trainer = focal_trainer()(model=model, args=args, train_dataset=Encoded(tokenizer, *d["train"]),
                              eval_dataset=splits["valid"], processing_class=tokenizer,
                              data_collator=DataCollatorWithPadding(tokenizer), callbacks=list(callbacks))
    return trainer, splits, d
