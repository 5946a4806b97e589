"""`runner schema`: the JSON Schema of a spec file, for editors (taplo / Even Better TOML) and checks.

It is generated from the pydantic models (models.py, adapt.py, sweep.py: their types, bounds,
defaults and `description`s) and from the registry, so that what a plugin registers is in it too:

- `backbone`, `[loss] name`, `[data] source` and the strategy names are enums of the registered names;
- a member's `options` is checked against its backbone's options model (`backbone = "scratch"`:
  ScratchOptions), `[data.options]` against the loader's, and the other keys of `[loss]` (and of a
  member's `loss = {...}`) against the loss's options model (`name = "focal"`: gamma, alpha), each as an
  `if`/`then` on the name; a table with no name takes the default's (`csv`, `cross_entropy`), and a
  member's loss without a name is checked against the keys of every loss (its name is the top level's);
- a member's `train = {...}` is `[train]`'s model, its `adapt` `[adapt]`'s or a boolean.

The schema says what a file may hold; `runner validate` says the rest (cross-checks such as one
ensemble weight per member, the data, the models).
"""

from __future__ import annotations

import copy
from typing import Any

from runner.spec.models import Spec

SCHEMA_DIALECT = "http://json-schema.org/draft-07/schema#"  # if/then and const; what editors support widely
MARK = "runner schema"  # starts `$comment`: what `--out` may replace


def spec_schema(registry) -> dict[str, Any]:
    schema = Spec.model_json_schema(ref_template="#/$defs/{model}")
    defs = schema["$defs"]
    strategies = registry.names("selections")
    _options_by_name(defs["DataSpec"], "source", "options", registry, "datasets", defs, default="csv")
    _enum(defs["DataSpec"]["properties"]["source"], registry.names("datasets"))
    _loss(defs["LossSpec"], registry, defs, default=defs["LossSpec"]["properties"]["name"]["default"])

    member = defs["MemberSpec"]
    _enum(member["properties"]["backbone"], registry.names("backbones"))
    _options_by_name(member, "backbone", "options", registry, "backbones", defs, default=None)
    member["properties"]["train"] = {"$ref": "#/$defs/TrainSpec", "description": member["properties"]["train"].get(
        "description", "")}
    member_loss = {"type": "object", "description": member["properties"]["loss"].get("description", "")}
    _loss(member_loss, registry, defs, default=None,
          base={k: copy.deepcopy(v) for k, v in defs["LossSpec"]["properties"].items()})
    member["properties"]["loss"] = member_loss
    member["properties"]["adapt"] = {"anyOf": [{"type": "boolean"}, {"$ref": "#/$defs/AdaptSpec"}],
                                     "description": member["properties"]["adapt"].get("description", "")}

    from transformers.trainer_utils import SchedulerType

    _enum(defs["TrainSpec"]["properties"]["lr_scheduler"], [s.value for s in SchedulerType])
    _enum(defs["RefitSpec"]["properties"]["strategy"], ["selected", *strategies])
    _enum(defs["SweepSpec"]["properties"]["objective"], strategies)
    metrics = ["eval_loss", *(f"eval_{n}" for n in registry.names("metrics"))]
    metric = defs["SelectionSpec"]["properties"]["metric"]
    metric["description"] += " Registered: " + ", ".join(metrics) + "."
    metric["examples"] = metrics
    return {"$schema": SCHEMA_DIALECT,
            "$comment": f"{MARK}: generated from runner's spec models and the plugins registered when it ran "
                        "(regenerate after adding a plugin)",
            "title": "runner spec", **{k: v for k, v in schema.items() if k != "title"}}


def _enum(prop: dict, names: list[str]) -> None:
    """Limit a string property (or the string branch of an optional one) to `names`."""
    target = prop
    for branch in prop.get("anyOf", []):
        if branch.get("type") == "string":
            target = branch
    target["enum"] = list(names)


def _options_schema(component, defs: dict) -> dict:
    """The JSON Schema of a component's options model (its nested models moved into the root `$defs`);
    a component without options takes an empty table."""
    if component.options is None:
        return {"type": "object", "maxProperties": 0, "description": f"{component.name!r} takes no options"}
    s = component.options.model_json_schema(ref_template="#/$defs/{model}")
    for name, d in s.pop("$defs", {}).items():
        defs.setdefault(name, d)
    return s


def _defined(component, options: dict, defs: dict) -> dict:
    """A `$ref` to `options`, kept in `$defs` under its model's name (the plugin's name added on a clash)."""
    if component.options is None:
        return options
    name = component.options.__name__
    if defs.get(name, options) != options:
        name = f"{name}.{component.name}"
    defs[name] = options
    return {"$ref": f"#/$defs/{name}"}


def _described(props: dict) -> dict:
    """Properties reduced to their help (no types): what every branch offers an editor to complete, while
    the `then` of the branch that applies checks the values."""
    return {k: {key: v[key] for key in ("description", "title", "default") if key in v} for k, v in props.items()}


def _options_by_name(model: dict, key: str, options_key: str, registry, kind: str, defs: dict,
                     default: str | None) -> None:
    """`model[options_key]` checked by the options model of the component named by `model[key]`."""
    branches, hints = [], {}
    for name in registry.names(kind):
        component = registry.get(kind, name)
        options = _options_schema(component, defs)
        name_is = {"properties": {key: {"const": name}}}
        if name != default:
            name_is["required"] = [key]
        branches.append({"if": name_is, "then": {"properties": {options_key: _defined(component, options, defs)}}})
        hints.update(_described(options.get("properties", {})))
    prop = model["properties"][options_key]
    prop.pop("additionalProperties", None)
    if hints:
        prop["properties"] = hints
    model.setdefault("allOf", []).extend(branches)


def _loss(model: dict, registry, defs: dict, default: str | None, base: dict | None = None) -> None:
    """A loss table: `name` and `label_smoothing`, and the named loss's options as its other keys. With no
    `name`, the `default` loss's options, or (`default` None: a member's loss, named at the top level)
    the keys of every registered loss."""
    base = base if base is not None else model["properties"]
    base = {k: v for k, v in base.items() if k in ("name", "label_smoothing")}
    _enum(base["name"], registry.names("losses"))
    if default is None:
        base["name"].pop("default", None)
    branches, hints, every = [], {}, {}
    for name in registry.names("losses"):
        options = _options_schema(registry.get("losses", name), defs)
        props = options.get("properties", {})
        closed = options.get("additionalProperties", True) is False or "maxProperties" in options
        then = {"properties": {**base, **props}, "required": options.get("required", [])}
        if closed:
            then["additionalProperties"] = False
        cond = {"properties": {"name": {"const": name}}, "required": ["name"]}
        if name == default:
            cond = {"properties": {"name": {"const": name}}}  # true too when `name` is left out
        branches.append({"if": cond, "then": then})
        hints.update(_described(props))
        every.update(props)
    if default is None:  # a member's loss without a name: any registered loss's keys (untyped: they may differ)
        branches.append({"if": {"not": {"required": ["name"]}},
                         "then": {"properties": {**base, **_described(every)}, "additionalProperties": False}})
    model["properties"] = {**base, **hints}
    model.pop("additionalProperties", None)
    model["allOf"] = branches


def is_schema(path) -> bool:
    """Whether `path` holds a schema this command wrote (its `$comment` starts with the mark)."""
    import json

    try:
        with open(path, "rb") as f:
            doc = json.loads(f.read(4_000_000))
        return isinstance(doc, dict) and str(doc.get("$comment", "")).startswith(MARK)
    except (OSError, ValueError):
        return False
