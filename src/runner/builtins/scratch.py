"""The built-in `scratch` backbone: a small randomly initialised BERT or RoBERTa with a tokenizer
trained on the training split (runner.data.tokenization), for the quickstart and the tests, which
have no Hub access. Registered by runner.builtins.backbones.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, model_serializer, model_validator

from runner.errors import ModelLoadError
from runner.spec.compat import drop_for_hash, fill_stored
from runner.train.backbones import add_special_tokens, label_maps

# The scratch tokenizer of each architecture: its default, the ones it accepts, and the one runner
# trained before the `tokenizer` option existed (runner.spec.compat: what a stored spec without the
# key means, and the value the spec hash leaves out).
TOKENIZERS = {"bert": ("wordpiece", "words"), "roberta": ("bpe",)}
TOKENIZER_BEFORE = {"bert": "words", "roberta": "bpe"}


class ScratchOptions(BaseModel):
    """Options of the `scratch` backbone: a small random BERT/RoBERTa and a tokenizer trained on train."""

    model_config = ConfigDict(extra="forbid", strict=True)

    architecture: Literal["bert", "roberta"] = Field("bert",
        description="bert (WordPiece tokenizer) or roberta (byte-level BPE).")
    # upper bounds well above any model trained from scratch on a task's texts: a typo (an extra
    # digit) is then a spec error instead of an allocation that overflows or exhausts memory
    hidden_size: int = Field(default=64, gt=0, le=8192, description="Hidden size (divisible by heads).")
    layers: int = Field(default=2, gt=0, le=96, description="Transformer layers.")
    heads: int = Field(default=2, gt=0, le=256, description="Attention heads.")
    intermediate_size: int | None = Field(default=None, gt=0, le=65536,
        description="Feed-forward size; default 4 x hidden_size.")
    vocab_size: int = Field(default=8000, ge=100, le=1_000_000,
        description="Upper bound of the tokenizer's vocabulary (trained on the training split).")
    dropout: float = Field(default=0.1, ge=0.0, lt=1.0, description="Dropout of hidden states and attention.")
    lowercase: bool = Field(True, description="Lowercase texts before tokenizing (accents are kept).")
    tokenizer: Literal["wordpiece", "words", "bpe"] | None = Field(
        default=None,
        description=(
            "How the tokenizer is trained on the training texts (runner.data.tokenization). "
            "'wordpiece' (bert's default): WordPiece with learned subword units, so an unseen word splits "
            "into the longest pieces the vocabulary has; deterministic in every process. "
            "'bpe' (roberta's, the only one it takes): byte-level BPE. "
            "'words': what bert members used before 'wordpiece' (every character plus the most frequent "
            "whole words; any other word falls apart into characters), to reproduce runs trained with it."),
    )

    @model_validator(mode="before")
    @classmethod
    def _tokenizer_of_stored_options(cls, data: Any, info: ValidationInfo):
        arch = data.get("architecture", "bert") if isinstance(data, dict) else None
        return fill_stored(data, info, "tokenizer", TOKENIZER_BEFORE.get(arch))

    @model_validator(mode="after")
    def _heads_divide_hidden(self):
        if self.hidden_size % self.heads:
            raise ValueError(f"hidden_size ({self.hidden_size}) must be divisible by heads ({self.heads})")
        return self

    @model_validator(mode="after")
    def _tokenizer_fits_architecture(self):
        allowed = TOKENIZERS[self.architecture]
        if self.tokenizer is None:
            self.tokenizer = allowed[0]
        elif self.tokenizer not in allowed:
            raise ValueError(f"tokenizer {self.tokenizer!r} does not fit architecture {self.architecture!r} "
                             f"(it needs that architecture's special tokens); use {' or '.join(map(repr, allowed))}")
        return self

    @model_serializer(mode="wrap")
    def _hashed_without_the_old_tokenizer(self, handler, info):
        return drop_for_hash(handler(self), info, "tokenizer", TOKENIZER_BEFORE[self.architecture])


def _scratch_tokenizer(ctx, options: ScratchOptions):
    # start-up time: the registry loads in every command, and transformers only when a member is built
    from runner.data.tokenization import train_tokenizer

    if ctx.tokenizer is not None:
        return ctx.tokenizer
    if ctx.adapted is not None:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(ctx.adapted), trust_remote_code=False, local_files_only=True)
    if not ctx.train_texts:
        raise ModelLoadError("the scratch backbone trains its tokenizer on the training texts, and there are none")
    tokenizer = train_tokenizer(ctx.train_texts, options.tokenizer, vocab_size=options.vocab_size,
                                lowercase=options.lowercase, max_length=ctx.max_length)
    add_special_tokens(tokenizer, ctx.special_tokens)
    return tokenizer


def _scratch_config(ctx, options: ScratchOptions, tokenizer, labels: dict):
    from transformers import BertConfig, RobertaConfig

    common = dict(
        vocab_size=len(tokenizer),  # includes added special tokens
        hidden_size=options.hidden_size,
        num_hidden_layers=options.layers,
        num_attention_heads=options.heads,
        intermediate_size=options.intermediate_size or 4 * options.hidden_size,
        hidden_dropout_prob=options.dropout,
        attention_probs_dropout_prob=options.dropout,
        pad_token_id=tokenizer.pad_token_id,
        # PyTorch's fused attention (transformers' default for BERT/RoBERTa, asked for explicitly so
        # that no release's default can change it): the same numbers as eager, less memory and time
        attn_implementation="sdpa",
        **labels,
    )
    if options.architecture == "bert":
        return BertConfig(max_position_embeddings=ctx.max_length, **common)
    # RoBERTa numbers positions from pad_token_id + 1, hence the + 2; it has one token type.
    return RobertaConfig(max_position_embeddings=ctx.max_length + 2, type_vocab_size=1,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, **common)


def build_scratch(ctx, options: ScratchOptions):
    import torch
    from transformers import AutoModelForSequenceClassification

    tokenizer = _scratch_tokenizer(ctx, options)
    config = _scratch_config(ctx, options, tokenizer, label_maps(ctx))
    torch.manual_seed(ctx.seed)  # same seed, same initial weights (of the head, when adapted)
    if ctx.adapted is not None:  # the adapted encoder (saved by runner.train.adapt from adapt_scratch's model)
        model = AutoModelForSequenceClassification.from_pretrained(str(ctx.adapted), config=config,
                                                                   use_safetensors=True, trust_remote_code=False,
                                                                   local_files_only=True)
    else:
        model = AutoModelForSequenceClassification.from_config(config)
    return model, tokenizer


def adapt_scratch(ctx, options: ScratchOptions):
    """The small BERT/RoBERTa with a masked-LM head, randomly initialised from the adaptation's seed:
    adapting a scratch member is pretraining it on the task's texts."""
    import torch
    from transformers import AutoModelForMaskedLM

    tokenizer = _scratch_tokenizer(ctx, options)
    config = _scratch_config(ctx, options, tokenizer, {})
    torch.manual_seed(ctx.seed)
    return AutoModelForMaskedLM.from_config(config), tokenizer
