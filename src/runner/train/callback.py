"""The Trainer callback that stores every epoch: metrics, and every example's probabilities.

It hooks into Trainer's own events: `on_log` picks up the epoch's train loss, `on_evaluate` (after the
validation pass) predicts the test split too, and `on_save` (after the checkpoint is on disk) writes
the epoch's metrics and predictions to the store in one transaction, then prunes checkpoints that
neither selection nor SWA can need. A checkpoint is therefore always on disk before its rows are
committed, which is what makes resuming after a crash safe. Without a validation split (a refit on
train+valid) Trainer does not evaluate, and `on_save` predicts the test split itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
from transformers import TrainerCallback

from runner.core.records import EpochRecord, MemberHistory
from runner.core.selection import best_epoch
from runner.errors import TrainingError
from runner.store import checkpoints
from runner.train import ranks
from runner.train.evaluation import EncodedSplit, MetricComputer, predict_split


@dataclass
class PendingEpoch:
    """An evaluated epoch waiting for its checkpoint to reach the disk."""

    record: EpochRecord
    predictions: list[tuple[str, np.ndarray, np.ndarray]]  # (split, example idx, probs)


class StoreCallback(TrainerCallback):
    """Stores each epoch of one member and keeps only the checkpoints still needed.

    `history` (epoch -> EpochRecord) is shared with the caller: a resumed member passes in the
    epochs already stored, and reads the full history after training. `bind(trainer)` must be called
    once the Trainer exists (the callback predicts the test split through it).
    """

    def __init__(self, *, store, run_id: str, owner: checkpoints.MemberDir, metric_fns: dict[str, Callable],
                 computer: MetricComputer, valid: EncodedSplit | None, test: EncodedSplit | None, num_labels: int,
                 selection_key: str, greater_is_better: bool, swa_k: int, history: dict[int, EpochRecord],
                 on_epoch: Callable[[EpochRecord], None] | None = None, progress=None):
        self.store, self.run_id, self.owner = store, run_id, owner
        self.member = owner.member
        self.metric_fns, self.computer = metric_fns, computer
        self.valid, self.test, self.num_labels = valid, test, num_labels
        self.selection_key, self.greater = selection_key, greater_is_better
        self.swa_k = swa_k
        self.history = history
        self.on_epoch = on_epoch
        self.progress = progress
        self.trainer = None
        self._train_loss: float | None = None
        self._pending: PendingEpoch | None = None

    def bind(self, trainer) -> "StoreCallback":
        self.trainer = trainer
        return self

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs and "eval_loss" not in logs:
            loss = float(logs["loss"])
            epoch = int(math.ceil(state.epoch - 1e-6))
            if not math.isfinite(loss):
                raise TrainingError(f"member {self.member}: the training loss became {loss} in epoch {epoch}; "
                                    "lower the learning rate or check the data and the loss options")
            self._train_loss = loss

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        epoch = int(round(state.epoch))
        eval_loss = float(metrics.get("eval_loss", float("nan")))
        if not math.isfinite(eval_loss):
            raise TrainingError(f"member {self.member}: the validation loss became {eval_loss} in epoch {epoch}; "
                                "lower the learning rate or check the data and the loss options")
        values = {"eval_loss": eval_loss}
        values.update({f"eval_{k}": float(metrics[f"eval_{k}"]) for k in self.metric_fns if f"eval_{k}" in metrics})
        self._pending = self._pending_epoch(epoch, values, [("valid", self.valid.order, self.computer.last_probs)])

    def _pending_epoch(self, epoch: int, values: dict, predictions: list) -> PendingEpoch:
        """The epoch's record: the train loss, what the validation pass gave, and the test split."""
        values = {"train_loss": self._train_loss, **values}
        if self.test is not None:
            test_probs, test_values = predict_split(self.trainer, self.test, self.metric_fns, "test", self.num_labels,
                                                    self.member)
            values.update(test_values)
            predictions.append(("test", self.test.order, test_probs))
        self._train_loss = None
        return PendingEpoch(EpochRecord(epoch, {k: v for k, v in values.items() if v is not None}), predictions)

    def on_save(self, args, state, control, **kwargs):
        if self._pending is None and self.valid is None:
            # No validation split (a refit on train+valid): Trainer does not evaluate, so the epoch is
            # recorded here, once its checkpoint is saved, from the train loss and the test split.
            self._pending = self._pending_epoch(int(round(state.epoch)), {}, [])
        pending, self._pending = self._pending, None
        if pending is None:  # a save without an evaluation (never with runner's arguments)
            return
        self.commit(pending)

    def commit(self, pending: PendingEpoch) -> None:
        """Store an epoch whose checkpoint is on disk (in one transaction), then prune the checkpoints."""
        record = pending.record
        self.store.log_checkpoint(self.run_id, self.member, f"epoch-{record.epoch}", record.epoch, record.rows(),
                                  pending.predictions)
        self.history[record.epoch] = record
        if ranks.writes():  # under torchrun, rank 0 owns the member's folder (runner.train.ranks)
            self._prune()
        if self.on_epoch is not None:
            self.on_epoch(record)

    def on_step_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.step(self.member, state.global_step, state.max_steps)

    def _prune(self) -> None:
        """Keep the best checkpoint so far, the last K for SWA, and the latest for resuming."""
        found = checkpoints.epoch_checkpoints(self.owner)
        if not found:
            return
        keep = set(sorted(found)[-max(self.swa_k, 1):])
        best = best_epoch(MemberHistory.of(self.member, self.history.values()), self.selection_key, self.greater)
        if best is not None:
            keep.add(best)
        checkpoints.prune(self.owner, keep)
