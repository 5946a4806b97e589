"""Built-in selection strategies: `last`, `swa`, and for the training objective and every registered
metric (plugin metrics included) `best_eval_<metric>` and `best_eval_<metric>_smoothed`."""

from __future__ import annotations

from runner.core.selection import pick_best, pick_best_smoothed, pick_last, pick_swa
from runner.plugins.hookspecs import hookimpl


@hookimpl
def register_selections(register, metrics):
    register("last", pick_last, description="the last epoch trained")
    register("swa", pick_swa, description="the average of the last K epoch checkpoints ([swa] k)")
    for name, metric in sorted(metrics.items()):
        key, greater = f"eval_{name}", metric.greater_is_better
        word = "highest" if greater else "lowest"
        register(f"best_{key}", pick_best(key, greater), metric=key, greater_is_better=greater,
                 description=f"the epoch with the {word} {key}")
        register(f"best_{key}_smoothed", pick_best_smoothed(key, greater), metric=key, greater_is_better=greater,
                 description=f"the later epoch of the two consecutive epochs with the {word} mean {key}")
