"""A script's evaluation splits as runner stores them, and predicting them with the script's model.

A Trainer script gives its eval datasets as items with `input_ids` (and `attention_mask`, ...) and
`labels`. `ScriptSplit` reads them once: their labels, their texts (given, or decoded by the script's
tokenizer), and an order sorted by length, as runner's own evaluation splits are
(runner.train.evaluation.encode), so that predicting them pads little and batches exactly as
`runner apply` does. `predict` runs the model on them in a forked random state: a script with the
callback added trains on the same random stream as without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch

from runner.core.maths import softmax
from runner.data.prepare import Split
from runner.errors import InputError
from runner.train.evaluation import check_logits

LABEL_KEYS = ("labels", "label")


@dataclass
class ScriptSplit:
    """One eval split of a script: its items (as the script's collator takes them), labels, texts and
    length order (`order[i]`: the split index of the example at position i)."""

    name: str
    items: list[dict[str, Any]]
    labels: np.ndarray
    texts: list[str]
    order: np.ndarray

    def as_split(self) -> Split:
        return Split(self.texts, self.labels)

    @property
    def index(self) -> np.ndarray:
        """The examples' indices in the split, the order the stored probabilities are in."""
        return np.arange(len(self.items))


def read_split(name: str, dataset, texts: Sequence[str] | None, tokenizer, num_labels: int) -> ScriptSplit:
    """The items of `dataset` (anything with `len` and `[i]` giving a mapping with `input_ids` and
    `labels`), checked; InputError naming the split and the item otherwise."""
    where = f"StoreCallback(splits={{{name!r}: ...}})"
    try:
        n = len(dataset)
    except TypeError:
        raise InputError(f"{where}: the split has no len(); pass the dataset the script gives Trainer as "
                         "eval_dataset (a datasets.Dataset or a torch Dataset of dicts)") from None
    if n == 0:
        raise InputError(f"{where}: the split is empty")
    items, labels, lengths = [], np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
    for i in range(n):
        item = dict(dataset[i])
        key = next((k for k in LABEL_KEYS if k in item), None)
        if key is None or "input_ids" not in item:
            raise InputError(f"{where}: item {i} has keys {sorted(item)}; each item needs 'input_ids' and 'labels' "
                             "(the tokenized split, as Trainer evaluates it)")
        label = int(np.asarray(item.pop(key)).reshape(-1)[0])
        if not 0 <= label < num_labels:
            raise InputError(f"{where}: item {i} has label {label}, outside the {num_labels} labels given")
        labels[i], lengths[i] = label, len(item["input_ids"])
        items.append(item)
    if texts is None:
        if tokenizer is None:
            raise InputError(f"{where}: without texts={{{name!r}: [...]}} the texts are decoded with the Trainer's "
                             "processing_class, and it has none; pass the texts")
        texts = [tokenizer.decode(item["input_ids"], skip_special_tokens=True) for item in items]
    texts = [str(t) for t in texts]
    if len(texts) != n:
        raise InputError(f"StoreCallback(texts={{{name!r}: ...}}): {len(texts)} texts for a split of {n} items")
    return ScriptSplit(name, items, labels, texts, np.argsort(lengths, kind="stable"))


@torch.no_grad()
def predict(model, split: ScriptSplit, collate: Callable, batch_size: int, num_labels: int,
            member: str) -> np.ndarray:
    """Probabilities (in split order) of every example, batched in length order as Trainer's
    evaluation batches runner's splits; the model is left in the mode it was in."""
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = np.zeros((len(split.items), num_labels), dtype=np.float32)
    try:
        with torch.random.fork_rng(devices=devices):
            for start in range(0, len(split.order), batch_size):
                rows = split.order[start:start + batch_size]
                batch = collate([split.items[i] for i in rows])
                inputs = {k: v.to(device) for k, v in batch.items() if k not in LABEL_KEYS}
                logits = model(**inputs).logits.float().cpu().numpy()
                check_logits(logits, num_labels, member)
                out[rows] = softmax(logits)
    finally:
        model.train(was_training)
    return out
