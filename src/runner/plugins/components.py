"""What a plugin registers: one typed record per kind of component.

Each registration hook hands a plugin a `register` callback whose keyword parameters are the
capabilities of that kind (`takes_model`, `check`, `greater_is_better`...). A misspelt capability is a
`TypeError` that names the plugin, never a key silently ignored in a `**kwargs` bag. The core reads
these records by attribute; nothing reads a capability by string key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class Component:
    """Fields every component has: its registered name, the plugin that registered it, and where
    that plugin came from (`builtin`, an entry point, or a file path)."""

    name: str
    plugin: str  # the plugin's name in the plugin manager (a module name, `entrypoint:x`, `file:/abs/x.py`)
    origin: str  # what a person reads: "builtin", "entry point x (pkg.mod)", or the plugin file's path


@dataclass(frozen=True)
class Backbone(Component):
    """`build(ctx, options) -> (model, tokenizer)`; see hookspecs.register_backbones."""

    build: Callable[..., Any] = None  # type: ignore[assignment]
    options: type | None = None
    takes_model: bool = False  # the spec must give a `model` (a Hub id or a local path)
    # check(model, options) raises ModelLoadError when `model` cannot be loaded; it must be cheap
    # (runner calls it for every member before building anything, to report every member at once)
    check: Callable[[str, Any], None] | None = None
    # adapt(ctx, options) -> (masked_lm_model, tokenizer): what runner.train.adapt trains with masked-LM
    # before fine-tuning; `build` then starts from the saved result (ctx.adapted). None: not adaptable
    adapt: Callable[..., Any] | None = None


@dataclass(frozen=True)
class Loss(Component):
    """`build(ctx, options) -> loss(logits, labels)`; see hookspecs.register_losses."""

    build: Callable[..., Any] = None  # type: ignore[assignment]
    options: type | None = None


@dataclass(frozen=True)
class Dataset(Component):
    """`load(ctx, options) -> RawDataset | {split: rows}`; see hookspecs.register_datasets."""

    load: Callable[..., Any] = None  # type: ignore[assignment]
    options: type | None = None
    # read_file(path, ctx, options) -> rows: one file read as a test split is (labels optional), for a
    # loader of a file format (csv, jsonl, parquet); what `runner predict` reads INPUT with. None: the
    # loader gets INPUT as its `train` path and its `train` rows are taken
    read_file: Callable[..., Any] | None = None


@dataclass(frozen=True)
class Metric(Component):
    """`fn(probs, labels) -> float`; see hookspecs.register_metrics. `fn` is None for `loss`, the
    training objective, which Trainer computes and which is listed so that strategies can use it."""

    fn: Callable[..., float] | None = None
    greater_is_better: bool = True


@dataclass(frozen=True)
class Selection(Component):
    """A checkpoint-selection strategy: `pick(history) -> checkpoint name or None`; see
    hookspecs.register_selections and runner.core.selection."""

    pick: Callable[..., str | None] = None  # type: ignore[assignment]
    description: str = ""
    # The validation metric the strategy optimises (`eval_accuracy`), if it has one, and its direction:
    # what a sweep's pruner watches and what says which ensemble is better.
    metric: str | None = None
    greater_is_better: bool | None = None
