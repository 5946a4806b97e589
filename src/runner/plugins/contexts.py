"""What a plugin's functions receive: one typed context per kind of component.

A backbone's `build(ctx, options)` gets a `BackboneContext`, a loss's `build(ctx, options)` a
`LossContext`, a dataset loader's `load(ctx, options)` a `LoadContext` and returns rows or a
`RawDataset`. They are plain records, so a plugin can be tested by building one by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class BackboneContext:
    """Everything a backbone may need to build its model and tokenizer."""

    model: str | None  # Hub id or local path, for backbones that take one
    num_labels: int
    label_names: list[str]
    train_texts: list[str] = field(default_factory=list)  # to train a tokenizer from scratch
    special_tokens: list[str] = field(default_factory=list)
    max_length: int = 128
    seed: int = 0
    tokenizer: Any = None  # reuse this tokenizer instead of building one (set when loading a checkpoint)
    adapted: Path | None = None  # start from this masked-LM-adapted folder (runner.train.adapt), not `model`


@dataclass
class LossContext:
    num_labels: int
    class_counts: list[int] = field(default_factory=list)  # per label, in the training split
    label_smoothing: float = 0.0


@dataclass
class LoadContext:
    """What a dataset loader receives: the spec's `[data]` table and where relative paths start."""

    data: Any  # runner.spec.DataSpec
    base_dir: Path
    seed: int = 0

    def path(self, value: str) -> Path:
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.base_dir / p


@dataclass
class RawDataset:
    """A loader's result: rows (`{"text": ..., "label": ...}`) per split, optional label names, and
    where each split came from (for error messages)."""

    splits: dict[str, list[dict[str, Any]]]
    label_names: list[str] | None = None
    sources: dict[str, str] = field(default_factory=dict)
