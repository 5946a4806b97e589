"""Typed records of what a run holds: read once from the store, used by every command.

`RunRecord` is a run parsed once (selection metric and direction, labels, loss, members and their
status), so `compare`, `ensemble`, `plot` and `report` never walk the spec's JSON themselves.
`EpochRecord` is one epoch of one member (what training stores and what strategies read), and
`MemberHistory` a member's epochs as a selection strategy sees them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterator, Mapping

# The store calls the validation split `valid` (as `[data].valid` does); metric names on it carry
# Hugging Face's `eval_` prefix (`eval_accuracy`), as `[selection].metric` and strategy names do.
SPLIT_PREFIX = {"valid": "eval", "train": "train", "test": "test"}
PREFIX_SPLIT = {v: k for k, v in SPLIT_PREFIX.items()}


def metric_key(split: str, name: str) -> str:
    """`("valid", "accuracy")` -> `"eval_accuracy"`; other splits keep their name as the prefix."""
    return f"{SPLIT_PREFIX.get(split, split)}_{name}"


def split_key(key: str) -> tuple[str, str]:
    """`"eval_accuracy"` -> `("valid", "accuracy")`, the inverse of `metric_key`."""
    prefix, name = key.split("_", 1)
    return PREFIX_SPLIT.get(prefix, prefix), name


@dataclass(frozen=True)
class EpochRecord:
    """One epoch of one member: `metrics` maps `train_loss`, `eval_<name>`, `test_<name>` to values."""

    epoch: int
    metrics: Mapping[str, float]

    def get(self, key: str) -> float | None:
        v = self.metrics.get(key)
        return v if v is not None and math.isfinite(v) else None

    def rows(self) -> list[tuple[str, str, float]]:
        """The store's long rows `(split, name, value)`."""
        return [(*split_key(k), float(v)) for k, v in self.metrics.items() if v is not None]


@dataclass(frozen=True)
class MemberHistory:
    """What a selection strategy sees of a member: its epochs in order, with training and
    validation metrics only (no test metric, so no strategy can select on test), and whether an SWA
    checkpoint exists."""

    member: str
    epochs: tuple[EpochRecord, ...]
    has_swa: bool = False

    @classmethod
    def of(cls, member: str, epochs, has_swa: bool = False) -> "MemberHistory":
        shown = tuple(
            EpochRecord(e.epoch, {k: v for k, v in e.metrics.items() if not k.startswith("test_")})
            for e in sorted(epochs, key=lambda e: e.epoch)
        )
        return cls(member, shown, has_swa)

    def values(self, key: str) -> list[tuple[int, float]]:
        """(epoch, value) of every epoch where `key` is a finite number."""
        return [(e.epoch, v) for e in self.epochs if (v := e.get(key)) is not None]

    def __iter__(self) -> Iterator[EpochRecord]:
        return iter(self.epochs)


@dataclass(frozen=True)
class MemberRecord:
    name: str
    backbone: str
    model: str | None
    seed: int
    status: str  # running | finished | failed
    selected_checkpoint: str | None
    swa_epochs: tuple[int, ...] = ()
    error: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    name: str
    spec: Mapping[str, Any]  # the resolved spec, as `runner validate` prints it
    spec_hash: str
    dataset_id: str
    status: str
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None
    label_names: tuple[str, ...]
    selection_metric: str  # e.g. "eval_accuracy"
    greater_is_better: bool
    members: tuple[MemberRecord, ...]
    parent_run_id: str | None = None  # set on a refit: the run it retrained on train+valid
    refit_strategy: str | None = None  # ... and the parent's strategy whose epoch counts it trained for
    repeat_group: str | None = None  # `repeats = N`: the replicas of one spec over member seeds
    repeat_index: int | None = None  # 0 .. N-1 (0: the run the spec makes without repeats)

    @property
    def is_refit(self) -> bool:
        return self.parent_run_id is not None

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    @property
    def finished(self) -> list[MemberRecord]:
        return [m for m in self.members if m.status == "finished"]

    def member(self, name: str) -> MemberRecord | None:
        return next((m for m in self.members if m.name == name), None)

    @property
    def selected_strategy(self) -> str:
        """The registered strategy that [selection] amounts to (`best_eval_accuracy`), or `selected`
        when the spec forced the metric's direction against its default."""
        resolved = self.spec.get("selection", {}).get("resolved", {})
        return resolved.get("strategy") or _legacy_strategy(self.selection_metric, self.greater_is_better)

    @property
    def ensemble_weights(self):
        return self.spec.get("ensemble", {}).get("weights", "equal")

    @property
    def ensemble_checkpoint(self) -> str:
        return self.spec.get("ensemble", {}).get("checkpoint", "selected")

    @property
    def loss_name(self) -> str:
        return self.spec.get("loss", {}).get("name", "cross_entropy")

    @classmethod
    def from_rows(cls, run: Mapping[str, Any], members: list[Mapping[str, Any]]) -> "RunRecord":
        spec = json.loads(run["spec"]) if isinstance(run["spec"], str) else dict(run["spec"])
        resolved = spec.get("selection", {}).get("resolved", {})
        labels = run.get("label_names")
        labels = json.loads(labels) if isinstance(labels, str) else (labels or [])
        # in the spec's order, however they were scheduled (members train at once under Ray)
        order = {m.get("name"): i for i, m in enumerate(spec.get("members") or []) if isinstance(m, dict)}
        members = sorted(members, key=lambda m: order.get(m["member"], len(order)))
        return cls(
            run_id=run["run_id"], name=run["name"], spec=spec, spec_hash=run["spec_hash"],
            dataset_id=run["dataset_id"], status=run["status"], started_at=run.get("started_at"),
            finished_at=run.get("finished_at"), error=run.get("error"), label_names=tuple(labels),
            selection_metric=resolved.get("metric", "eval_accuracy"),
            greater_is_better=bool(resolved.get("greater_is_better", True)),
            members=tuple(
                MemberRecord(
                    name=m["member"], backbone=m["backbone"], model=m.get("model"), seed=m["seed"],
                    status=m["status"], selected_checkpoint=m.get("selected_checkpoint"),
                    swa_epochs=tuple(m.get("swa_epochs") or ()), error=m.get("error"),
                    options=json.loads(m["options"]) if isinstance(m.get("options"), str) else (m.get("options") or {}),
                )
                for m in members
            ),
            parent_run_id=run.get("parent_run_id"), refit_strategy=run.get("refit_strategy"),
            repeat_group=run.get("repeat_group"), repeat_index=run.get("repeat_index"),
        )


def _legacy_strategy(metric: str, greater: bool) -> str:
    """Runs stored before strategies were recorded: the built-in metrics' default directions."""
    defaults = {"eval_loss": False, "eval_accuracy": True, "eval_f1_macro": True}
    return f"best_{metric}" if defaults.get(metric) == greater else "selected"
