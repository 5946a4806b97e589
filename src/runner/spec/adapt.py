"""`[adapt]`: masked-LM adaptation of each member's encoder to the task's texts before fine-tuning
(task-adaptive pretraining; runner.train.adapt runs it and caches the result by content).

    [adapt]
    epochs = 3
    learning_rate = 1e-4
    batch_size = 32
    max_length = 128                 # default: [data] max_length
    mlm_probability = 0.15
    whole_word_mask = false
    texts = ["train", "valid"]       # splits whose texts are used; "test" only when named (transductive)
    extra = ["unlabeled.txt"]        # one text per line, or a csv/jsonl/parquet with the text column
    seed = 0                         # default: the spec's seed
    new_head = false                 # true: adapt a checkpoint that has no masked-LM head (its head starts at random)

A member takes the table as it is, overrides fields with its own `adapt = { epochs = 5 }`, or opts
out with `adapt = false`; `adapt = true` on a member adapts it with the defaults even without a
top-level table.

A checkpoint without a masked-LM head (a sentence-embedding model, an encoder saved as `BertModel`)
gets a head of random weights: its first epochs train that head, not the encoder, and the held-out
loss starts above ln(vocabulary size). The dry run refuses that unless `new_head = true`.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator, model_serializer, model_validator

from runner.spec.base import MAX_SEED, Strict, Text

SPLIT_NAMES = ("train", "valid", "test")


class AdaptSpec(Strict):
    epochs: int = Field(3, ge=1, le=1000, description="Masked-LM epochs.")
    learning_rate: float = Field(1e-4, gt=0, le=1, description="Masked-LM learning rate.")
    batch_size: int = Field(32, ge=1, le=65536, description="Masked-LM batch size.")
    max_length: int | None = Field(None, ge=8, le=8192, description="Tokens per text; default: [data] max_length.")
    mlm_probability: float = Field(0.15, gt=0.0, lt=1.0, description="Share of tokens masked.")
    whole_word_mask: bool = Field(False, description="Mask whole words rather than single tokens.")
    texts: list[str] = Field(default_factory=lambda: ["train", "valid"],
        description="Splits whose texts are used (train, valid; test only when named: transductive).")
    extra: list[Text] = Field(default_factory=list,
        description="Files of unlabeled text: one per line, or csv/jsonl/parquet with the text column.")
    seed: int | None = Field(None, ge=0, le=MAX_SEED, description="The adaptation's seed; default: the spec's seed.")
    new_head: bool = Field(False, description="Adapt a checkpoint that has no masked-LM head: the head starts "
                                              "at random (without it, such a member is refused).")

    @model_serializer(mode="wrap")
    def _omit_new_head_when_off(self, handler):
        # added after adaptations and runs were stored: left out while off, so their spec hashes and
        # adaptation keys stay what they were
        d = handler(self)
        if d.get("new_head") is False:
            d.pop("new_head")
        return d

    @field_validator("texts")
    @classmethod
    def _texts(cls, v):
        bad = [t for t in v if t not in SPLIT_NAMES]
        if bad:
            raise ValueError(f"{bad[0]!r} is not a split; texts names splits among {', '.join(SPLIT_NAMES)}")
        if len(set(v)) != len(v):
            raise ValueError("each split may be named once")
        return v

    @field_validator("extra")
    @classmethod
    def _extra(cls, v):
        if any(not p.strip() for p in v):
            raise ValueError("a file name must not be empty")
        return v

    @model_validator(mode="after")
    def _some_text(self):
        if not self.texts and not self.extra:
            raise ValueError("nothing to adapt on: give texts (splits) or extra (files)")
        return self


def merged_adapt(top: AdaptSpec | None, top_set: dict[str, Any], own: bool | dict[str, Any] | None):
    """What a member adapts with: (the raw table to validate, or None for no adaptation).

    `own` is the member's `adapt` value: None inherits the top-level table, False opts out, True
    adapts with the top-level table or the defaults, a table overrides the top-level fields.
    """
    if own is False or (own is None and top is None):
        return None
    if own is None or own is True:
        return dict(top_set) if top is not None else {}
    return {**top_set, **own}
