"""The hooks a runner plugin may implement.

Registration hooks receive a `register` callback and return nothing; the core owns the registry, so a
name registered twice is an error naming both plugins rather than a silent override. `register` takes
the capabilities of its kind as keyword parameters (see runner.plugins.components); a misspelt one is an
error naming the plugin. Event hooks are called with keyword arguments; their return values are
ignored. A plugin implements any subset, in a module found as a built-in, through the `runner`
entry-point group, or as a `*.py` file in a plugins directory (see runner.plugins.registry for which one).
An implementation may accept fewer arguments than the hook offers (pluggy passes only those named).
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("runner")
hookimpl = pluggy.HookimplMarker("runner")


@hookspec
def register_backbones(register):
    """Register backbones: encoders with a classification head, and their tokenizers.

    Call ``register(name, build, options=None, takes_model=False, check=None, adapt=None)`` once per backbone:

    - ``name`` is what a spec's ``members[].backbone`` names;
    - ``build(ctx, options)`` returns ``(model, tokenizer)``. ``ctx`` is a
      :class:`runner.train.backbones.BackboneContext` (``model``: the spec's Hub id or path, ``num_labels``,
      ``label_names``, ``train_texts``, ``special_tokens``, ``max_length``, ``seed``, and
      ``tokenizer``: a tokenizer to reuse instead of building one, set when a saved checkpoint is
      loaded). ``options`` is an instance of the options model built from the member's ``options``
      table (None without a model). The tokenizer is a Hugging Face tokenizer. The model is a
      ``torch.nn.Module``; its ``forward`` receives the tokenizer's outputs as keyword arguments
      (``input_ids``, ``attention_mask``, and ``token_type_ids`` when the tokenizer makes them; accept
      ``**kwargs`` for the rest) and returns an object with ``.logits`` of shape
      ``(batch, num_labels)``. It never needs ``labels``: runner computes the loss itself;
    - ``options`` is a pydantic model class (``extra="forbid"`` recommended), or None for no options;
    - ``takes_model=True`` if the backbone needs a spec's ``model`` field (a Hub id or local path);
    - ``check(model, options)`` (optional) raises :class:`runner.ModelLoadError` when ``model`` cannot
      be loaded. It must be cheap (read a config, not the weights): runner calls it for every member
      before building any, so that one ``runner validate`` names every unreachable model;
    - ``adapt(ctx, options)`` (optional) makes the backbone adaptable by ``[adapt]`` (masked-LM
      training on the task's texts before fine-tuning). It returns ``(masked_lm_model, tokenizer)``:
      a module whose ``forward`` takes the tokenizer's outputs and returns ``.logits`` of shape
      ``(batch, sequence, vocabulary)``, and the tokenizer the member will use (it needs a mask
      token). ``ctx.seed`` is the adaptation's seed. runner trains it (runner.train.adapt), saves it in a
      folder (``save_pretrained`` when the model has it, else ``model.safetensors``, plus the
      tokenizer) and then calls ``build`` with ``ctx.adapted`` set to that folder: ``build`` must
      start its encoder (and take its tokenizer) from there, with a new classification head.
      Without ``adapt``, a member of this backbone under ``[adapt]`` is a validation error.
    """


@hookspec
def register_losses(register):
    """Register losses.

    Call ``register(name, build, options=None)``. ``build(ctx, options)`` returns a function
    ``loss(logits, labels) -> scalar tensor`` (mean over the batch). ``ctx`` is a
    :class:`runner.train.losses.LossContext` (``num_labels``, ``class_counts`` of the training split,
    ``label_smoothing``). The options model validates the extra keys of the spec's ``[loss]`` table
    (everything but ``name`` and ``label_smoothing``). Raise :class:`runner.OptionError` from
    ``build`` for an option that is wrong given the data; runner reports it against the spec key.
    """


@hookspec
def register_datasets(register):
    """Register dataset loaders.

    Call ``register(name, load, options=None, read_file=None)``. ``load(ctx, options)`` returns a dict that maps split
    names (``train``, and ``valid``/``test`` where the loader provides them) to a list of
    ``{"text": str, "label": ...}`` rows (or a :class:`runner.plugins.contexts.RawDataset`); labels follow the
    rules of :mod:`runner.data.labels` (text names, integer ids when exactly 0..n-1, None for missing).
    ``ctx`` is a :class:`runner.plugins.contexts.LoadContext` with the spec's ``[data]`` table and the
    spec file's directory for relative paths. The options model validates ``[data.options]``.
    A loader of one file format may also give ``read_file(path, ctx, options)``: the rows of one file
    with its labels optional, as a test split is read; ``runner predict`` reads its INPUT with it
    (without it, INPUT is given to ``load`` as the ``train`` path and the ``train`` rows are taken).
    A row it returns may also hold ``"columns"``: the row's own cells (column name -> value), which
    ``runner predict`` writes beside its predictions (without it, the text is carried).
    """


@hookspec
def register_metrics(register):
    """Register metrics.

    Call ``register(name, fn, greater_is_better=True)``. ``fn(probs, labels) -> float`` takes a
    ``(n, num_labels)`` float array of predicted probabilities and an ``(n,)`` int array of labels.
    The metric is computed for every checkpoint of every member, SWA checkpoint and ensemble, stored
    per split under ``name``, shown as ``eval_<name>``/``test_<name>`` columns of the ``epochs`` view,
    and may be named as a selection metric ``eval_<name>``; a strategy ``best_eval_<name>`` (and
    ``best_eval_<name>_smoothed``) is derived from it. ``name`` is an identifier (letters, digits, _).
    """


@hookspec
def register_selections(register, metrics):
    """Register checkpoint-selection strategies.

    Call ``register(name, pick, description="", metric=None, greater_is_better=None)``.
    ``pick(history)`` receives a :class:`runner.core.selection.MemberHistory`: one member's epochs, each an
    :class:`runner.core.selection.EpochRecord` with its training and validation metrics (``train_loss``,
    ``eval_loss``, ``eval_<metric>``; never test metrics, so no strategy can peek at test), and
    ``has_swa``. It returns the checkpoint to use, ``"epoch-<n>"`` or ``"swa"``, or None when it
    cannot choose. ``metric``/``greater_is_better`` name the validation metric the strategy optimises,
    if any. ``metrics`` maps every registered metric name (and ``loss``, the training objective) to a
    :class:`runner.plugins.components.Metric`, so a plugin can derive one strategy per metric, as the
    built-ins do. Every strategy appears in the ``selections`` table, in ``runner compare`` and gets an
    ensemble; ``runner ensemble --checkpoint NAME`` uses it.
    """


@hookspec
def on_epoch_end(run_id, member, epoch, metrics):
    """Called after an epoch's metrics and predictions are committed to the store.

    ``run_id`` is the run's id in the store (``runs.run_id``), ``member`` the member's name and
    ``epoch`` the epoch just finished, counted from 1. ``metrics`` maps ``"<split>_<name>"``
    (``train_loss``, ``eval_accuracy``, ``test_f1_macro``...) to floats. Use it to forward numbers to
    another tracker, or to alert.
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
