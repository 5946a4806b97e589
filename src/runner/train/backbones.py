"""What a backbone plugin receives, and loading a saved member checkpoint back.

A backbone's `build(ctx, options)` returns `(model, tokenizer)`. Checkpoints are written as
safetensors with the tokenizer and a `runner.json` that names the backbone and its options, so a
saved member can be loaded again without the spec or its training data (`load_checkpoint`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from runner.errors import InputError
from runner.plugins.contexts import BackboneContext
from runner.plugins.registry import load_registry
from runner.spec.compat import STORED

RUNNER_JSON = "runner.json"


def write_runner_json(directory: Path, backbone: str, options: dict[str, Any], label_names: list[str],
                      max_length: int, model: str | None, plugin: str | None = None, origin: str | None = None) -> None:
    """`plugin`/`origin`: the plugin that registered the backbone, so a reload can name it."""
    info = {
        "backbone": backbone,
        "plugin": plugin,
        "origin": origin,
        "options": options,
        "label_names": label_names,
        "max_length": max_length,
        "model": model,
        "format": "runner-checkpoint-1",
    }
    (directory / RUNNER_JSON).write_text(json.dumps(info, indent=2))


def add_special_tokens(tokenizer, tokens: list[str]) -> int:
    """Add `tokens` as special tokens (never split, never lowercased); returns how many were new."""
    if not tokens:
        return 0
    # transformers 5 renamed `additional_special_tokens` to `extra_special_tokens`; without
    # replace_extra_special_tokens=False the call would replace, not extend, the existing list.
    return tokenizer.add_special_tokens({"extra_special_tokens": list(tokens)}, replace_extra_special_tokens=False)


def label_maps(ctx) -> dict:
    """`num_labels`, `id2label` and `label2id` for a Hugging Face config, from a BackboneContext."""
    names = list(ctx.label_names) or [str(i) for i in range(ctx.num_labels)]
    return dict(num_labels=ctx.num_labels, id2label=dict(enumerate(names)),
                label2id={n: i for i, n in enumerate(names)})


def load_checkpoint(directory: str | Path, registry=None, plugins_dir: str | Path | None = None):
    """Load a saved member checkpoint: returns `(model, tokenizer, info)`.

    Hugging Face models come back through `AutoModelForSequenceClassification`; other backbones are
    rebuilt by their plugin from `runner.json` and their weights read from `model.safetensors`.
    Built-in and entry-point plugins are found by themselves; a plugin that was a file in a plugins
    directory is loaded from `plugins_dir` (or a `registry` already holding it): runner never runs
    a Python file because a checkpoint names it, and the error says which file to pass.
    Only safetensors are read: no pickle is ever loaded.
    """
    from safetensors.torch import load_file
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    directory = Path(directory)
    info_path = directory / RUNNER_JSON
    if not info_path.is_file():
        raise InputError(f"{directory}: not a runner checkpoint (no {RUNNER_JSON})")
    info = json.loads(info_path.read_text())
    tokenizer = AutoTokenizer.from_pretrained(str(directory))
    if (directory / "config.json").is_file():
        model = AutoModelForSequenceClassification.from_pretrained(str(directory), use_safetensors=True)
        return model, tokenizer, info
    if registry is None:
        registry = load_registry(Path(plugins_dir) if plugins_dir is not None else None)
    comp = registry.backbone(info["backbone"])
    if comp is None:
        origin = info.get("origin")
        where = (f"it was registered by the plugin {origin}; pass plugins_dir={str(Path(origin).parent)!r} "
                 "(or --plugins with that folder)" if origin and origin.endswith(".py")
                 else f"it was registered by {origin}; install that package" if origin
                 else "load the plugin that registers it")
        raise InputError(f"{directory}: backbone {info['backbone']!r} is not registered; {where}")
    # options stored before a key existed read as what runner did then (runner.spec.compat)
    options = (comp.options.model_validate(info["options"], context={STORED: True})
               if comp.options is not None else None)
    ctx = BackboneContext(
        model=info.get("model"),
        num_labels=len(info["label_names"]),
        label_names=info["label_names"],
        max_length=info.get("max_length", 128),
        tokenizer=tokenizer,
    )
    model, _ = comp.build(ctx, options)
    state = load_file(str(directory / "model.safetensors"))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or [k for k in missing if not k.endswith("num_batches_tracked")]:
        raise InputError(f"{directory}: weights do not match backbone {info['backbone']!r} "
                         f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    model.eval()
    return model, tokenizer, info
