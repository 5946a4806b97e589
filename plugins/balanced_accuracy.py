"""A metric and a selection strategy, as plugins.

`balanced_accuracy` is the mean recall over the classes: on the notebook's data, where weak negative
is the minority, a model that never predicts it can still score a high accuracy, but not a high
balanced accuracy. Once registered it is stored for every checkpoint and ensemble, gets its
`eval_balanced_accuracy` / `test_balanced_accuracy` columns in the `epochs` view, can be named in
`[selection] metric = "eval_balanced_accuracy"`, and gets the strategies `best_eval_balanced_accuracy`
and `best_eval_balanced_accuracy_smoothed` without another line.

`first_within_1pt` is a strategy of its own: the earliest epoch whose validation accuracy is within
one point of the best, i.e. the least-trained checkpoint that is as good (a rule of thumb against
overfitting a small validation split). `runner compare` shows it beside the built-in strategies, and
`runner ensemble --checkpoint first_within_1pt` ensembles the checkpoints it picks.
"""

import numpy as np

from runner import hookimpl


def balanced_accuracy(probs, labels):
    """Mean over the classes present in `labels` of the share of their examples predicted right."""
    pred = probs.argmax(-1)
    recalls = [np.mean(pred[labels == c] == c) for c in np.unique(labels)]
    return float(np.mean(recalls))


def first_within_1pt(history):
    """`history` is a runner.core.records.MemberHistory: the member's epochs with their validation
    metrics. Return a checkpoint name ("epoch-3", or "swa"), or None to pick nothing."""
    values = history.values("eval_accuracy")  # [(epoch, value)], finite values only
    if not values:
        return None
    best = max(v for _, v in values)
    epoch = next(e for e, v in values if v >= best - 0.01)
    return f"epoch-{epoch}"


@hookimpl
def register_metrics(register):
    register("balanced_accuracy", balanced_accuracy, greater_is_better=True)


@hookimpl
def register_selections(register):
    register("first_within_1pt", first_within_1pt, metric="eval_accuracy", greater_is_better=True,
             description="the earliest epoch within 0.01 of the best eval_accuracy")
