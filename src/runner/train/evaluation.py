"""Tokenized splits and predicting them: what training, SWA and the dry run share.

Evaluation splits are sorted by length so that dynamic padding pads little: predicting the test
split every epoch then costs a fraction of an epoch of training. `EncodedSplit.order` maps each
position back to the example's index in its split, which is what the store keys predictions by.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from runner.core.maths import softmax
from runner.core.records import metric_key
from runner.data.prepare import Split
from runner.data.tokenized import Encoded, tokenize
from runner.errors import TrainingError


class EncodedSplit(torch.utils.data.Dataset):
    """Tokenized examples; `order[i]` is the split index of the example at position `i`.

    The tokens are a runner.data.tokenized.Encoded (shared, read-only, possibly with other members):
    position `i` reads row `order[i]` of it, so sorting a split costs an index, not a copy.
    """

    def __init__(self, encoded: Encoded, labels: np.ndarray | None, order: np.ndarray):
        self.encoded = encoded
        self.labels = labels
        self.order = order

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, i: int) -> dict[str, Any]:
        row = self.order[i]
        a, b = self.encoded.offsets[row], self.encoded.offsets[row + 1]
        item = {k: v[a:b].tolist() for k, v in self.encoded.arrays.items()}
        if self.labels is not None:
            item["labels"] = int(self.labels[i])
        return item


def encode(tokenizer, split: Split, max_length: int, sort_by_length: bool,
           encoded: Encoded | None = None) -> EncodedSplit:
    """The split as Trainer reads it; `encoded`: its tokens already (runner.data.tokenized's cache),
    else it is tokenized now. Evaluation splits are sorted by length (stable)."""
    if encoded is None:
        encoded = tokenize(tokenizer, split.texts, max_length)
    order = np.arange(len(split))
    if sort_by_length:
        order = np.argsort(encoded.lengths, kind="stable")
    labels = split.labels[order] if split.labels is not None else None
    return EncodedSplit(encoded, labels, order)


def logits_of(predictions) -> np.ndarray:
    return np.asarray(predictions[0] if isinstance(predictions, tuple) else predictions)


def check_logits(logits: np.ndarray, num_labels: int, member: str) -> None:
    """A backbone must return (n, num_labels) logits; anything else would store wrong probabilities."""
    if logits.ndim != 2 or logits.shape[1] != num_labels:
        raise TrainingError(f"member {member}: the model returned logits of shape {tuple(logits.shape)}, but "
                            f"there are {num_labels} labels; its head must output (batch, {num_labels})")


def split_metrics(metric_fns: dict[str, Callable], probs: np.ndarray, labels: np.ndarray | None,
                  split: str) -> dict[str, float]:
    """Every metric of `probs` against `labels`, keyed as `eval_accuracy`, `test_log_loss`... ({} without labels)."""
    if labels is None:
        return {}
    return {metric_key(split, name): float(fn(probs, labels)) for name, fn in metric_fns.items()}


class MetricComputer:
    """`compute_metrics` for Trainer: every registered metric, keeping the probabilities it saw."""

    def __init__(self, metric_fns: dict[str, Callable], num_labels: int, member: str):
        self.metric_fns = metric_fns
        self.num_labels = num_labels
        self.member = member
        self.last_probs: np.ndarray | None = None

    def __call__(self, eval_pred) -> dict[str, float]:
        logits = logits_of(eval_pred.predictions)
        check_logits(logits, self.num_labels, self.member)
        probs = softmax(logits)
        self.last_probs = probs
        labels = np.asarray(eval_pred.label_ids)
        return {name: float(fn(probs, labels)) for name, fn in self.metric_fns.items()}


def predict_split(trainer, ds: EncodedSplit, metric_fns: dict[str, Callable], split: str, num_labels: int,
                  member: str) -> tuple[np.ndarray, dict[str, float]]:
    """Probabilities for every example of `ds` and its metrics as {"<prefix>_<name>": value},
    including the training objective as `<prefix>_loss` when `ds` has labels.

    The prediction runs in a forked random state: a DataLoader draws from torch's global generator
    when it starts, so predicting the test split would otherwise change the next epochs' shuffling
    and dropout, and a spec with a test split would train differently from one without.
    """
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    prefix = metric_key(split, "x")[:-2]
    with torch.random.fork_rng(devices=devices):
        out = trainer.predict(ds, metric_key_prefix=prefix)
    logits = logits_of(out.predictions)
    check_logits(logits, num_labels, member)
    probs = softmax(logits)
    row = {f"{prefix}_loss": float(out.metrics[f"{prefix}_loss"])} if f"{prefix}_loss" in out.metrics else {}
    row.update(split_metrics(metric_fns, probs, ds.labels, split))
    return probs, row
