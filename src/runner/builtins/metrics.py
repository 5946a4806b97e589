"""Built-in metrics: `accuracy`, `f1_macro` and `log_loss` (their maths: runner.core.maths).

`loss` is not a metric: it is the training objective (the spec's loss, label smoothing and all),
computed by Trainer for members only. `log_loss`, the negative log-likelihood of the stored
probabilities, is the one loss every member checkpoint, SWA checkpoint and ensemble has, so all rows
of `runner compare` compare on the same number.
"""

from __future__ import annotations

from runner.core.maths import accuracy, f1_macro, log_loss
from runner.plugins.hookspecs import hookimpl


@hookimpl
def register_metrics(register):
    register("accuracy", accuracy, greater_is_better=True)
    register("f1_macro", f1_macro, greater_is_better=True)
    register("log_loss", log_loss, greater_is_better=False)
