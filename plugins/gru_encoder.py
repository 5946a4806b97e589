"""A backbone plugin: a bidirectional GRU text classifier that is not a Hugging Face model.

Drop this file into a `plugins/` directory and a spec can use it as `backbone = "gru"`:

    [[members]]
    name = "gru"
    backbone = "gru"
    options = { hidden_size = 128, layers = 2 }
"""

from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, model_serializer, model_validator
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

from runner import hookimpl  # also exported as runner.hookimpl
from runner.data.tokenization import train_tokenizer
from runner.spec.compat import drop_for_hash, fill_stored


class GRUOptions(BaseModel):
    """The member's `options` table; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")
    embedding_dim: int = Field(64, gt=0)
    hidden_size: int = Field(64, gt=0)
    layers: int = Field(1, gt=0)
    dropout: float = Field(0.1, ge=0, lt=1)
    vocab_size: int = Field(8000, ge=100)
    # "wordpiece" learns subword units; "words" is what runner's WordPiece vocabulary was before
    tokenizer: Literal["wordpiece", "words"] = "wordpiece"

    # `tokenizer` came after runs were stored (runner.spec.compat): a stored spec without it trained
    # with "words", and the spec hash leaves "words" out, so asking for it finds those runs.
    @model_validator(mode="before")
    @classmethod
    def _tokenizer_of_stored_options(cls, data: Any, info: ValidationInfo):
        return fill_stored(data, info, "tokenizer", "words")

    @model_serializer(mode="wrap")
    def _hashed_without_the_old_tokenizer(self, handler, info):
        return drop_for_hash(handler(self), info, "tokenizer", "words")


class GRUClassifier(nn.Module):
    """embedding -> BiGRU -> mean over the real (unpadded) tokens -> dropout -> linear."""

    def __init__(self, vocab_size: int, num_labels: int, pad_id: int, o: GRUOptions):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, o.embedding_dim, padding_idx=pad_id)
        self.gru = nn.GRU(o.embedding_dim, o.hidden_size, num_layers=o.layers, batch_first=True,
                          bidirectional=True, dropout=o.dropout if o.layers > 1 else 0.0)
        self.dropout = nn.Dropout(o.dropout)
        self.head = nn.Linear(2 * o.hidden_size, num_labels)

    # The Trainer passes the tokenizer's outputs by name; accept and ignore what a GRU has no use for.
    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None, **kwargs):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        # Packing makes the backward direction start at each text's last real token, so a text's
        # prediction does not depend on how much padding its batch needed.
        lengths = attention_mask.sum(1).clamp(min=1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(self.embed(input_ids), lengths, batch_first=True,
                                                   enforce_sorted=False)
        states, _ = self.gru(packed)
        states, _ = nn.utils.rnn.pad_packed_sequence(states, batch_first=True, total_length=input_ids.shape[1])
        mask = attention_mask.unsqueeze(-1).to(states.dtype)  # (batch, seq, 1): padding must not dilute the mean
        pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        logits = self.head(self.dropout(pooled))
        # Returning the loss too makes the model usable in a plain Trainer; runner's own losses
        # only need the logits.
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)


def build(ctx, options: GRUOptions):
    """Return (model, tokenizer). `ctx.tokenizer` is set when runner reloads a saved checkpoint:
    reuse it, so token ids match the saved embedding. Otherwise train one on the training split."""
    tokenizer = ctx.tokenizer
    if tokenizer is None:
        tokenizer = train_tokenizer(ctx.train_texts, options.tokenizer, vocab_size=options.vocab_size,
                                    max_length=ctx.max_length)
        if ctx.special_tokens:  # e.g. "<movie>": kept whole, never split into word pieces
            tokenizer.add_special_tokens({"extra_special_tokens": ctx.special_tokens},
                                         replace_extra_special_tokens=False)
    torch.manual_seed(ctx.seed)  # same seed, same initial weights
    model = GRUClassifier(len(tokenizer), ctx.num_labels, tokenizer.pad_token_id, options)
    return model, tokenizer


@hookimpl
def register_backbones(register):
    register("gru", build, options=GRUOptions)
