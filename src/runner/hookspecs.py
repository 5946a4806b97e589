"""The hooks a runner plugin may implement.

Registration hooks receive a `register` callback and return nothing; the core owns the registry, so a
name registered twice is an error naming both plugins rather than a silent override. Event hooks are
called with keyword arguments; their return values are ignored. A plugin implements any subset, in a
module found as a built-in, through the `runner` entry-point group, or as a `*.py` file in a plugins
directory.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("runner")
hookimpl = pluggy.HookimplMarker("runner")


@hookspec
def register_backbones(register):
    """Register backbones: encoders with a classification head, and their tokenizers.

    Call ``register(name, build, options=OptionsModel)`` once per backbone, where

    - ``name`` is what a spec's ``members[].backbone`` names;
    - ``build(ctx, options)`` returns ``(model, tokenizer)``. ``ctx`` is a
      :class:`runner.backbones.BackboneContext` (model id or path, ``num_labels``, ``label_names``,
      ``train_texts``, ``special_tokens``, ``max_length``, ``seed``, and ``tokenizer``: a tokenizer to
      reuse instead of building one, set when a saved checkpoint is loaded). ``options`` is an
      instance of ``OptionsModel`` built from the member's ``options`` table. The model is a
      ``torch.nn.Module`` whose ``forward(input_ids, attention_mask, ...)`` returns an object with
      ``.logits`` of shape ``(batch, num_labels)``; the tokenizer is a Hugging Face tokenizer;
    - ``options`` is a pydantic model class (``extra="forbid"`` recommended), or None for no options.
    - ``takes_model=True`` if the backbone needs a spec's ``model`` field (a Hub id or local path).
    """


@hookspec
def register_losses(register):
    """Register losses.

    Call ``register(name, build, options=OptionsModel)``. ``build(ctx, options)`` returns a function
    ``loss(logits, labels) -> scalar tensor`` (mean over the batch). ``ctx`` is a
    :class:`runner.losses.LossContext` (``num_labels``, ``class_counts`` of the training split,
    ``label_smoothing``). The options model validates the extra keys of the spec's ``[loss]`` table
    (everything but ``name`` and ``label_smoothing``).
    """


@hookspec
def register_datasets(register):
    """Register dataset loaders.

    Call ``register(name, load, options=OptionsModel)``. ``load(ctx, options)`` returns a dict that
    maps split names (``train``, and ``valid``/``test`` where the loader provides them) to a list of
    ``{"text": str, "label": str | int | None}`` rows. ``ctx`` is a :class:`runner.data.LoadContext`
    with the spec's ``[data]`` table and the spec file's directory for relative paths. The options
    model validates ``[data.options]``.
    """


@hookspec
def register_metrics(register):
    """Register metrics.

    Call ``register(name, fn, greater_is_better=True)``. ``fn(probs, labels) -> float`` takes a
    ``(n, num_labels)`` float array of predicted probabilities and an ``(n,)`` int array of labels.
    The metric is stored per split and epoch under ``name`` and may be named as a selection metric
    ``eval_<name>``.
    """


@hookspec
def on_epoch_end(run_id, member, epoch, metrics):
    """Called after an epoch's metrics and predictions are committed to the store.

    ``run_id`` is the run's id in the store (``runs.run_id``), ``member`` the member's name and
    ``epoch`` the epoch just finished, counted from 1. ``metrics`` maps ``"<split>_<name>"`` (``train_loss``, ``eval_accuracy``, ``test_f1_macro``...)
    to floats. Use it to forward numbers to another tracker, or to alert.
    """


@hookspec
def on_member_end(run_id, member, status, selected_epoch):
    """Called when a member has finished.

    ``run_id`` is the run's id in the store, ``member`` the member's name, ``status`` is ``finished``
    or ``failed``, and ``selected_epoch`` is the epoch chosen by ``[selection]`` (None when the member
    failed).
    """


@hookspec
def on_run_end(run_id, status, store_path):
    """Called once when ``runner apply`` finishes a run.

    ``run_id`` is the run's id in the store, ``status`` is ``finished`` or ``failed``, and
    ``store_path`` is the path of the DuckDB results file, for a plugin that reads the results.
    """
