"""A run's results as the read commands see them: what the store holds, plus the spec's ensembles that
`apply` did not store, computed in memory from the stored probabilities and never written.

`apply` builds the spec's ensemble of the spec's own strategy; `compare` shows it under other
strategies too (and `compare` over seeds, `compare A B` and `report` likewise). Those are built here,
each member checkpoint's probabilities read once (runner.posthoc.ensemble's memo), and looked up as if
stored: `metrics`, `predicted_counts` and `labelled` answer for stored and computed rows alike, so a
read command leaves the store byte-identical.
"""

from __future__ import annotations

import numpy as np

from runner.core.records import RunRecord
from runner.posthoc.ensemble import SPEC_ENSEMBLE, Ensemble, spec_ensembles
from runner.store import Store

Key = tuple[str, str, str]  # (kind, member, checkpoint)


class RunResults:
    """One run's numbers per (kind, member, checkpoint): `metrics[key]` is {"eval_accuracy": ...}."""

    def __init__(self, store: Store, run: RunRecord, registry):
        self.store, self.run, self.registry = store, run, registry
        self.metrics: dict[Key, dict[str, float]] = store.checkpoint_metrics(run.run_id)
        self.built: dict[Key, Ensemble] = {}  # computed here, not stored
        self._memo: dict = {}  # build_ensemble's: member checkpoints' probabilities, read once
        self._counts: dict[str, dict[Key, list[int]]] = {}
        self._labels: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
        self._probs: dict[tuple[Key, str], tuple[np.ndarray, np.ndarray]] = {}

    def add_spec_ensembles(self, checkpoints: dict[str, dict[str, str]]) -> "RunResults":
        """Compute the spec's ensemble of each strategy in `checkpoints` (strategy -> member ->
        checkpoint) that the store lacks (runner.posthoc.ensemble.spec_ensembles); returns self."""
        for ens in spec_ensembles(self.store, self.run, self.registry, checkpoints, self._memo):
            key = ("ensemble", SPEC_ENSEMBLE, ens.strategy)
            self.built[key] = ens
            self.metrics[key] = dict(ens.metrics)
            for split, counts in self._counts.items():  # already read: add the new rows
                if split in ens.probs:
                    counts[key] = _counts(ens.probs[split], self.run.num_labels)
        return self

    def predicted_counts(self, split: str) -> dict[Key, list[int]]:
        """key -> how often each label was predicted on `split` (one query for the stored rows)."""
        if split not in self._counts:
            k = self.run.num_labels
            counts = self.store.prediction_counts(self.run.run_id, split, k)
            for key, ens in self.built.items():
                if split in ens.probs:
                    counts[key] = _counts(ens.probs[split], k)
            self._counts[split] = counts
        return self._counts[split]

    def labels(self, split: str) -> tuple[np.ndarray, np.ndarray | None]:
        """(idx, label ids, None when any example of the split has no label) of the run's examples."""
        if split not in self._labels:
            with self.store.probabilities() as reader:
                self._labels[split] = reader.labels(self.run.dataset_id, split)
        return self._labels[split]

    def probabilities(self, key: Key, split: str) -> tuple[np.ndarray, np.ndarray]:
        """(idx, probs (n, K)) of a stored or computed row on `split`, sorted by idx; n = 0 when none."""
        ens = self.built.get(key)
        if ens is not None and split in ens.probs:
            return ens.idx[split], ens.probs[split]
        if (key, split) not in self._probs:
            kind, member, checkpoint = key
            cached = self._memo.get("probabilities", {}).get((member, checkpoint, split)) if kind == "member" else None
            if cached is None:
                with self.store.probabilities() as reader:
                    cached = reader.checkpoint(self.run.run_id, kind, member, checkpoint, split)
            self._probs[(key, split)] = cached
        return self._probs[(key, split)]

    def labelled(self, key: Key, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(idx, probs, labels or None) of a row on `split`: None when it has no predictions there or an
        example it predicted has no label."""
        idx, probs = self.probabilities(key, split)
        label_idx, label_ids = self.labels(split)
        if not len(idx) or label_ids is None:
            return idx, probs, None
        pos = np.searchsorted(label_idx, idx)
        if np.any(pos >= len(label_idx)) or not np.array_equal(label_idx[np.minimum(pos, len(label_idx) - 1)], idx):
            return idx, probs, None
        return idx, probs, label_ids[pos]


def _counts(probs: np.ndarray, k: int) -> list[int]:
    return np.bincount(probs.argmax(axis=1), minlength=k).tolist() if len(probs) else [0] * k
