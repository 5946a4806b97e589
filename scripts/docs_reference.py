"""The generated parts of the documentation site: reference tables built from the code when the site
is built, so that none of them can go stale.

mkdocs.yml names this file as a hook: on every page, a line `<!-- generated: NAME -->` is replaced by
what GENERATORS[NAME] returns (`mkdocs build`, `mkdocs serve`); an unknown name fails the build.

    cli          every command of the typer app (runner.cli): usage, help, arguments and options
    spec         every spec key, from the pydantic models as `runner schema` sees them (runner.spec.schema)
    components   the built-in backbones, losses and dataset loaders with their options, metrics, strategies
    store        every table and view of a new store with its columns and types (made in a temporary folder)
    hooks        the plugin hooks (runner.plugins.hookspecs): signature and docstring

    python scripts/docs_reference.py cli      # print one part, as the site shows it
"""

from __future__ import annotations

import inspect
import json
import re
import sys
import tempfile
from functools import cache
from pathlib import Path
from typing import Any, Callable

MARKER = re.compile(r"^<!-- generated: ([\w-]+) -->$", re.M)


# --- markdown helpers ----------------------------------------------------------------------------

def text(s: str) -> str:
    """Help text as markdown: `<...>` outside code spans escaped (`p_<label>` would be an HTML tag)."""
    parts = re.split(r"(`[^`]*`)", s)
    return "".join(p if p.startswith("`") else p.replace("<", "&lt;").replace(">", "&gt;") for p in parts)


def cell(s: str) -> str:
    """A table cell: one line, `|` escaped."""
    return text(" ".join(str(s).split())).replace("|", "\\|")


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def rst_to_md(doc: str) -> str:
    """A docstring written for Sphinx (``code``, :class:`x`) as markdown."""
    doc = re.sub(r":(?:class|mod|func|meth|attr):`~?([^`]+)`", r"`\1`", inspect.cleandoc(doc))
    return text(doc.replace("``", "`"))


# --- the command line ----------------------------------------------------------------------------

def _param_rows(command, ctx) -> list[list[str]]:
    """[names and value, help] of each argument and option, as `runner CMD --help` shows them."""
    rows = []
    for param in command.get_params(ctx):
        if param.name == "help":
            continue
        names, help_ = param.get_help_record(ctx)
        rows.append([f"`{names}`", help_.replace("\\[", "[")])  # rich's markup escape
    return rows


def _summary(command) -> str:
    """A command's first paragraph of help, as `runner --help` lists it."""
    return (command.help or "").strip().split("\n\n")[0]


def cli() -> str:
    """Every command of `runner`, in `runner --help`'s order: usage, its help, its arguments and options."""
    import typer
    import typer.main

    from runner.cli import app

    group = typer.main.get_command(app)
    root = typer.Context(group, info_name="runner")
    header = ["argument / option", "what it does"]
    commands = group.list_commands(root)
    parts = ["## runner\n", text(group.help or "") + "\n",
             "Options of `runner` itself, given before or after the command:\n",
             table(header, _param_rows(group, root)),
             "The commands, each with its first line of help:\n",
             table(["command", "does"], [[f"[`runner {n}`](#runner-{n})", _summary(group.get_command(root, n))]
                                         for n in commands])]
    for name in commands:
        command = group.get_command(root, name)
        ctx = typer.Context(command, info_name=name, parent=root)
        usage = " ".join(command.collect_usage_pieces(ctx))
        parts += [f"## runner {name}\n", f"```\nrunner {name} {usage}\n```\n", text(command.help or "") + "\n"]
        rows = _param_rows(command, ctx)
        if rows:
            parts.append(table(header, rows))
    return "\n".join(parts)


# --- the spec ------------------------------------------------------------------------------------

def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + "}"
    return str(value)


def _ref(prop: dict) -> str | None:
    if "$ref" in prop:
        return prop["$ref"].rsplit("/", 1)[1]
    for branch in prop.get("anyOf", []):
        if "$ref" in branch:
            return branch["$ref"].rsplit("/", 1)[1]
    return None


def _type(prop: dict) -> str:
    """A property's type as a reader says it: `"a" | "b"` for an enum, bounds in brackets, `or none`."""
    if "enum" in prop:
        return " | ".join(_toml(v) for v in prop["enum"])
    if "const" in prop:
        return _toml(prop["const"])
    if "anyOf" in prop:
        kinds = [_type(b) for b in prop["anyOf"] if b.get("type") != "null"]
        nullable = any(b.get("type") == "null" for b in prop["anyOf"])
        return " or ".join(dict.fromkeys(kinds)) + (" or none" if nullable else "")
    if "$ref" in prop:
        return "table"
    kind = {"integer": "integer", "number": "number", "string": "string", "boolean": "boolean",
            "object": "table", "array": "list"}.get(prop.get("type"), prop.get("type", "any"))
    if kind == "list" and "items" in prop:
        kind = f"list of {_type(prop['items'])}"
    low = prop.get("minimum", prop.get("exclusiveMinimum"))
    high = prop.get("maximum", prop.get("exclusiveMaximum"))
    if low is not None or high is not None:
        left = "(" if "exclusiveMinimum" in prop else "["
        right = ")" if "exclusiveMaximum" in prop else "]"
        kind += f" {left}{_toml(low) if low is not None else ''} .. {_toml(high) if high is not None else ''}{right}"
    return kind


def _typed(prop: dict) -> bool:
    """Whether the schema gives the property a type: `runner schema` adds untyped ones to a table whose
    keys depend on a name (`[loss]`'s options), as hints for an editor."""
    return any(k in prop for k in ("type", "anyOf", "$ref", "enum", "const"))


def _rows(model: dict, prefix: str = "") -> list[list[str]]:
    rows = []
    for key, prop in model.get("properties", {}).items():
        if not _typed(prop):
            continue
        default = _toml(prop["default"]) if "default" in prop and prop["default"] is not None else ""
        required = key in model.get("required", [])
        rows.append([f"`{prefix}{key}`", _type(prop), "required" if required else (f"`{default}`" if default else ""),
                     prop.get("description", "")])
    return rows


def spec() -> str:
    """Every key of a spec file, table by table, from the schema `runner schema` prints (built-ins only)."""
    from runner.plugins.registry import load_registry
    from runner.spec.schema import spec_schema

    schema = spec_schema(load_registry(None))
    defs = schema["$defs"]
    header = ["key", "type", "default", "what it is"]
    top = {"properties": {k: v for k, v in schema["properties"].items() if _ref(v) is None and v.get("type") != "array"},
           "required": schema.get("required", [])}
    parts = ["## Top level\n", table(header, _rows(top))]
    for key, prop in schema["properties"].items():
        if key in top["properties"]:
            continue
        model = _ref(prop) or _ref(prop.get("items", {}))
        title = f"[[{key}]]" if prop.get("type") == "array" else f"[{key}]"
        parts += [f"## `{title}`\n", text(prop.get("description", "")) + "\n", table(header, _rows(defs[model]))]
        hints = [k for k, v in defs[model].get("properties", {}).items() if not _typed(v)]
        if hints:
            parts.append(f"Its other keys ({', '.join(f'`{k}`' for k in hints)}) are the options of the "
                         "component it names: see [Built-in components](components.md).\n")
        for sub, subprop in defs[model].get("properties", {}).items():
            inner = _ref(subprop.get("additionalProperties", {})) if isinstance(
                subprop.get("additionalProperties"), dict) else None
            if inner:  # a table of tables: [sweep.space]'s distributions
                parts += [f"### `[{key}.{sub}]`: each entry\n", table(header, _rows(defs[inner]))]
            elif prop.get("type") != "array" and "properties" in defs.get(_ref(subprop) or "", {}):  # [track.mlflow]
                parts += [f"### `[{key}.{sub}]`\n", table(header, _rows(defs[_ref(subprop)]))]
    return "\n".join(parts)


# --- the built-in components ---------------------------------------------------------------------

def components() -> str:
    """The built-in backbones, losses and dataset loaders with their options, metrics and strategies."""
    from runner.plugins.registry import load_registry

    registry = load_registry(None)
    header = ["option", "type", "default", "what it is"]
    where = {"backbones": ("Backbones", "`[[members]] backbone = \"{name}\"`, options in `options = {{...}}`"),
             "losses": ("Losses", "`[loss] name = \"{name}\"`, options as the other keys of `[loss]`"),
             "datasets": ("Dataset loaders", "`[data] source = \"{name}\"`, options in `[data.options]`")}
    parts = []
    for kind, (title, used) in where.items():
        parts.append(f"## {title}\n")
        for name in registry.names(kind):
            component = registry.get(kind, name)
            parts.append(f"### `{name}`\n")
            parts.append(used.format(name=name) + ".\n")
            if component.options is None:
                parts.append("No options.\n")
                continue
            model = component.options.model_json_schema()
            doc = component.options.__dict__.get("__doc__")  # its own, not pydantic's BaseModel's
            if doc:
                parts.append(text(" ".join(inspect.cleandoc(doc).split("\n\n")[0].split())) + "\n")
            parts.append(table(header, _rows(model)))
    parts += ["## Metrics\n", "Stored for every checkpoint and ensemble on every split; `eval_<name>` and "
              "`test_<name>` columns of the `epochs` view; `[selection] metric = \"eval_<name>\"`.\n",
              table(["metric", "better"], [[f"`{n}`", "higher" if registry.metric(n).greater_is_better else "lower"]
                                           for n in registry.names("metrics")])]
    parts += ["## Selection strategies\n", "Blocks of `runner compare`, rows of `selections`, "
              "`runner ensemble --checkpoint NAME`, `runner predict --strategy NAME`.\n",
              table(["strategy", "picks"], [[f"`{s.name}`", s.description] for s in registry.selections()])]
    return "\n".join(parts)


# --- the store -----------------------------------------------------------------------------------

# What a row of each table is, and notes on the columns a reader needs explained. A table of a new
# store that is missing here, or a note on a column it does not have, fails the build.
TABLES: dict[str, tuple[str, dict[str, str]]] = {
    "runs": ("run", {
        "spec": "JSON: the resolved spec", "status": "`running`, `finished`, `failed`",
        "parent_run_id": "a refit's parent run", "refit_strategy": "the parent's strategy a refit took its epochs from",
        "environment": "JSON: runner, Python, torch, transformers and duckdb versions, the git commit of the "
                       "spec's folder, host, device, the spec and plugins folder read"}),
    "members": ("member of a run", {
        "selected_checkpoint": "`epoch-N`: what `[selection]` chose", "swa_epochs": "the epochs SWA averaged",
        "adapt_key": "the adaptation it started from (`adaptations`)", "error": "why a failed member failed"}),
    "examples": ("example of a dataset split", {"dataset_id": "a hash of the content: runs over the same data "
                                                              "share it"}),
    "metrics": ("value of a metric", {
        "kind": "`member` or `ensemble`", "member": "a member's or an ensemble's name",
        "checkpoint": "`epoch-N` or `swa` for members; the strategy for ensembles"}),
    "checkpoints": ("checkpoint (or ensemble) × split that has predictions: a small integer key `ckpt` for "
                    "its rows, which sit in `predictions_<k>` (one table per number of classes k: `ckpt`, `idx`, "
                    "`pred`, `probs FLOAT[k]`, stored by `ckpt` and `idx`); read them through the `predictions` "
                    "view", {"ckpt": "the key of its rows in `predictions_<num_labels>`, numbered as written",
                             "num_labels": "k: the length of each row's `probs`"}),
    "predictions": ("example × checkpoint (a view over `checkpoints` and `predictions_<k>`, with the columns "
                    "the table it replaced had)", {"probs": "the predicted probabilities, in label order"}),
    "epochs": ("member × epoch (a view): `eval_<metric>` and `test_<metric>` for every registered metric", {}),
    "selections": ("member × strategy: the checkpoint every registered strategy picks (ties go to the earliest "
                   "epoch), written when the member finishes; a strategy registered later is computed from the "
                   "stored epochs by each command that needs it, and not stored", {}),
    "confusion": ("checkpoint or ensemble × split × true label × predicted label, for every prediction "
                  "of a labelled example, `runner predict`'s labelled files included; pairs never seen have no row",
                  {"n": "how many examples"}),
    "ensemble_weights": ("member of an ensemble", {"method": "`given`, `equal` or `fit`"}),
    "inputs": ("file `runner predict` stored", {"split": "`input-<hash>`: its texts are in `examples`, its "
                                                         "probabilities in `predictions`"}),
    "calibrations": ("calibration `runner calibrate` fitted", {"bias": "added to each class's log-probability"}),
    "sweeps": ("sweep", {"storage": "Optuna's storage", "objective": "a selection strategy"}),
    "trials": ("trial of a sweep", {"status": "`finished`, `pruned`, `failed`, `running`",
                                    "value": "the objective on the validation split", "params": "JSON"}),
    "trial_params": ("param of a trial", {"param": "its dotted key", "value": "numeric", "value_text": "as written"}),
    "adaptations": ("adaptation (`[adapt]`), shared by every member that reuses it", {
        "settings": "JSON", "sources": "split or file → texts taken"}),
    "adapt_losses": ("adaptation × epoch × split", {
        "mlm_loss": "on the held-out slice (`heldout`) or an equal slice of the training texts (`train`), both "
                    "masked once", "epoch": "0 is before adapting"}),
    "token_stats": ("member × split: how the member's tokenizer met the split's texts, measured by the dry run", {
        "tokens": "the texts' own tokens, before truncation", "unknown": "how many are the unknown token (NULL "
        "without one)", "truncated": "texts longer than `max_length` with the special tokens"}),
}


def store() -> str:
    """Every table and view of a store as `runner apply` creates it, with its columns and their types."""
    from runner.store import Store

    with tempfile.TemporaryDirectory(prefix="runner-docs-") as tmp:
        st = Store(Path(tmp) / "results.duckdb").open()
        try:
            _, tables = st.query("SELECT table_name, table_type FROM information_schema.tables "
                                 "WHERE table_name NOT LIKE '\\_%' ESCAPE '\\' ORDER BY table_name")
            _, columns = st.query("SELECT table_name, column_name, data_type FROM information_schema.columns "
                                  "ORDER BY table_name, ordinal_position")
        finally:
            st.close()
    names = [t for t, _ in tables]
    unknown = sorted(set(names) - set(TABLES))
    gone = sorted(set(TABLES) - set(names))
    if unknown or gone:
        raise ValueError(f"scripts/docs_reference.py TABLES: describe the tables {unknown}, remove {gone}")
    parts = []
    for name in sorted(names, key=list(TABLES).index):
        row, notes = TABLES[name]
        cols = [(c, t) for tab, c, t in columns if tab == name]
        missing = sorted(set(notes) - {c for c, _ in cols})
        if missing:
            raise ValueError(f"scripts/docs_reference.py TABLES[{name!r}]: no columns {missing}")
        kind = " (view)" if dict(tables)[name] == "VIEW" else ""
        parts += [f"### `{name}`{kind}\n", f"One row per {text(row)}.\n",
                  table(["column", "type", "note"], [[f"`{c}`", f"`{t}`", notes.get(c, "")] for c, t in cols])]
    return "\n".join(parts)


# --- the hooks -----------------------------------------------------------------------------------

def hooks() -> str:
    """Every hook a plugin may implement, in the order runner.plugins.hookspecs defines them."""
    from runner.plugins import hookspecs

    specs = [fn for _, fn in inspect.getmembers(hookspecs, inspect.isfunction)
             if fn.__module__ == hookspecs.__name__ and fn.__name__.startswith(("register_", "on_"))]
    specs.sort(key=lambda fn: fn.__code__.co_firstlineno)
    parts = []
    for fn in specs:
        parts += [f"### `{fn.__name__}{inspect.signature(fn)}`\n", rst_to_md(fn.__doc__ or "") + "\n"]
    return "\n".join(parts)


GENERATORS: dict[str, Callable[[], str]] = {"cli": cli, "spec": spec, "components": components, "store": store,
                                            "hooks": hooks}


@cache
def generated(name: str) -> str:
    return GENERATORS[name]()


def expand(markdown: str, where: str = "") -> str:
    """A page with every `<!-- generated: NAME -->` line replaced by its generated markdown."""
    def replace(m: re.Match) -> str:
        if m.group(1) not in GENERATORS:
            raise KeyError(f"{where}: <!-- generated: {m.group(1)} --> names no generator "
                           f"(scripts/docs_reference.py has {', '.join(GENERATORS)})")
        return generated(m.group(1))

    return MARKER.sub(replace, markdown)


# --- the mkdocs hook -----------------------------------------------------------------------------

def on_page_markdown(markdown: str, page, config, files) -> str:
    from mkdocs.exceptions import PluginError

    try:
        return expand(markdown, page.file.src_uri)
    except (KeyError, ValueError) as e:
        raise PluginError(str(e).strip("'\"")) from None


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in GENERATORS:
        sys.exit(f"usage: python scripts/docs_reference.py {{{'|'.join(GENERATORS)}}}")
    sys.stdout.write(generated(sys.argv[1]))
