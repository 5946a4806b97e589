"""What a backbone plugin receives, and loading a saved member checkpoint back.

A backbone's `build(ctx, options)` returns `(model, tokenizer)`. Checkpoints are written as
safetensors with the tokenizer and a `runner.json` that names the backbone and its options, so a
saved member can be loaded again without the spec or its training data (`load_checkpoint`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from runner.errors import InputError
from runner.plugins.contexts import BackboneContext
from runner.plugins.registry import load_registry
from runner.spec.compat import STORED
from runner.store.checkpoints import RUNNER_JSON


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


class CheckpointInfo(BaseModel):
    """runner.json, as `load_checkpoint` reads it back (a later runner's extra keys are ignored)."""

    model_config = ConfigDict(extra="ignore", strict=True, allow_inf_nan=False)
    backbone: str = Field(min_length=1)
    label_names: list[str] = Field(min_length=2)
    max_length: int = Field(128, ge=1, le=1 << 20)
    options: dict[str, Any] | None = None
    model: str | None = None
    plugin: str | None = None
    origin: str | None = None


CUSTOM_CODE_FILES = ("config.json", "tokenizer_config.json")  # where transformers looks for `auto_map`


def check_files(directory: Path) -> dict[str, Any]:
    """The checkpoint's runner.json (checked), after checking the files `load_checkpoint` hands to
    transformers (`check_model_files`). InputError naming the file otherwise."""
    info_path = directory / RUNNER_JSON
    if not info_path.is_file():
        raise InputError(f"{directory}: not a runner checkpoint (no {RUNNER_JSON})")
    docs = check_model_files(directory)
    try:
        info = CheckpointInfo.model_validate(docs[RUNNER_JSON]).model_dump()
    except ValidationError as e:
        first = e.errors()[0]
        raise InputError(f"{info_path}: {'.'.join(map(str, first['loc']))}: {first['msg']}; the checkpoint is "
                         "damaged") from None
    return info


def check_model_files(directory: Path) -> dict[str, dict]:
    """The JSON files of a model folder by name, after checking what transformers would read: every
    JSON file parses to an object, no config names custom code (`auto_map`: runner never runs code from
    a model folder), and model.safetensors has a readable header. InputError naming the file otherwise."""
    from safetensors import safe_open

    docs = {}
    for f in sorted(directory.glob("*.json")):
        try:
            docs[f.name] = json.loads(f.read_bytes().decode("utf-8"))
        except (ValueError, UnicodeDecodeError, OSError) as e:
            raise InputError(f"{f}: not valid JSON ({e}); the checkpoint is damaged") from None
        if not isinstance(docs[f.name], dict):
            raise InputError(f"{f}: holds a JSON {type(docs[f.name]).__name__}, not an object; the checkpoint is "
                             "damaged")
    for name in CUSTOM_CODE_FILES:
        if name in docs and "auto_map" in docs[name]:
            raise InputError(f"{directory / name}: auto_map {docs[name]['auto_map']!r} names custom code; runner "
                             "never runs code from a model folder (trust_remote_code is off): use a checkpoint of a "
                             "model class transformers has")
    weights = directory / "model.safetensors"
    try:
        with safe_open(str(weights), framework="pt") as f:
            f.keys()
    except Exception as e:  # safetensors' own error type, or an OSError: a truncated or foreign file
        raise InputError(f"{weights}: not a readable safetensors file ({type(e).__name__}: {e}); the checkpoint "
                         "is damaged") from None
    return docs


def load_checkpoint(directory: str | Path, registry=None, plugins_dir: str | Path | None = None):
    """Load a saved member checkpoint: returns `(model, tokenizer, info)`.

    Hugging Face models come back through `AutoModelForSequenceClassification`; other backbones are
    rebuilt by their plugin from `runner.json` and their weights read from `model.safetensors`.
    Built-in and entry-point plugins are found by themselves; a plugin that was a file in a plugins
    directory is loaded from `plugins_dir` (or a `registry` already holding it): runner never runs
    a Python file because a checkpoint names it, and the error says which file to pass.
    Only safetensors are read: no pickle is ever loaded, no code from the folder runs
    (`trust_remote_code=False`, `local_files_only=True`), and a file that cannot be read, or weights that
    are not finite, are InputError naming the file (`check_files`).
    """
    from safetensors.torch import load_file
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    directory = Path(directory)
    info = check_files(directory)
    local = dict(trust_remote_code=False, local_files_only=True)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(directory), **local)
    except Exception as e:  # any of the tokenizer's files unreadable or inconsistent
        raise InputError(f"{directory}: the tokenizer cannot be loaded ({type(e).__name__}: {_first_line(e)}); "
                         "its files (tokenizer.json, tokenizer_config.json, ...) are damaged") from None
    if (directory / "config.json").is_file():
        try:
            model = AutoModelForSequenceClassification.from_pretrained(str(directory), use_safetensors=True, **local)
        except Exception as e:  # a config transformers cannot build, weights that do not fit it
            raise InputError(f"{directory / 'config.json'}: the model cannot be loaded from it and model.safetensors "
                             f"({type(e).__name__}: {_first_line(e)}); the checkpoint is damaged") from None
        _check_finite(model, directory)
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
    try:
        options = (comp.options.model_validate(info["options"] or {}, context={STORED: True})
                   if comp.options is not None else None)
    except ValidationError as e:
        raise InputError(f"{directory / RUNNER_JSON}: options are not valid for backbone {info['backbone']!r} "
                         f"({_first_line(e)}); the checkpoint is damaged") from None
    ctx = BackboneContext(
        model=info.get("model"),
        num_labels=len(info["label_names"]),
        label_names=info["label_names"],
        max_length=info.get("max_length", 128),
        tokenizer=tokenizer,
    )
    model, _ = comp.build(ctx, options)
    state = load_file(str(directory / "model.safetensors"))
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # a tensor of another shape
        raise InputError(f"{directory / 'model.safetensors'}: weights do not fit backbone {info['backbone']!r} "
                         f"({_first_line(e)})") from None
    if unexpected or [k for k in missing if not k.endswith("num_batches_tracked")]:
        raise InputError(f"{directory}: weights do not match backbone {info['backbone']!r} "
                         f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    _check_finite(model, directory)
    model.eval()
    return model, tokenizer, info


def _check_finite(model, directory: Path) -> None:
    import torch

    for name, t in model.state_dict().items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise InputError(f"{directory / 'model.safetensors'}: the weights {name} are not finite (nan or inf); "
                             "the checkpoint is damaged")


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return (text.splitlines() or [""])[0][:300]
