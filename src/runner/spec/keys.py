"""Dotted spec keys: what `--set KEY=VALUE` and `[sweep.space]` name, and setting them in a spec.

A key walks the spec's TOML tables:

- `loss.gamma`, `train.learning_rate`, `data.options.size`: a key of a table (the table is created
  when the spec leaves it out, as writing it in the file would);
- `loss.alpha[1]`: one item of a list (a per-class list; a single value there is first spread over
  the classes when their number is known, as the loss itself spreads it, and a list the spec leaves
  out starts at 1.0 for every class);
- `members[0].train.learning_rate` or `members.bert-h64.train.learning_rate`: a member's own keys
  (member names may hold dots: the longest name that fits is taken).

Values are TOML: `--set loss.gamma=2.5`, `--set train.batch_size=16`, `--set loss.alpha=[1,2,1,1]`,
`--set ensemble.weights="fit"`; a value that is not TOML is taken as a string (`--set loss.name=focal`).
Setting a key only changes the raw spec: the result is validated like a file, with the same messages.
"""

from __future__ import annotations

import copy
import re
import tomllib
from typing import Any

_PART = re.compile(r"([^.\[\]]+)((?:\[\d+\])*)")


class KeyPathError(ValueError):
    """A key that does not name a place in the spec (the message says why)."""


def toml_value(text: str) -> Any:
    """`2.5` -> 2.5, `[1, 2]` -> [1, 2], `"fit"` or `fit` -> "fit", `true` -> True."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def split_assignment(text: str) -> tuple[str, Any]:
    """`loss.gamma=2.5` -> ("loss.gamma", 2.5)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise KeyPathError(f"{text!r} is not KEY=VALUE (for example loss.gamma=2.5)")
    if not value.strip():
        raise KeyPathError(f"{key.strip()}= has no value (for example {key.strip()}=2.5)")
    return key.strip(), toml_value(value.strip())


def path_of(doc: dict, key: str) -> list[str | int]:
    """The path of `key` in the raw spec `doc`: table keys and list indexes."""
    if not key or key != key.strip():
        raise KeyPathError("an empty key, or one with spaces around it")
    rest = key
    path: list[str | int] = []
    if rest.startswith("members.") or rest == "members":
        members = doc.get("members") if isinstance(doc.get("members"), list) else []
        tail = rest[len("members."):]
        names = sorted((m.get("name") for m in members if isinstance(m, dict) and isinstance(m.get("name"), str)),
                       key=len, reverse=True)
        name = next((n for n in names if tail == n or tail.startswith(n + ".")), None)
        if name is None:
            known = ", ".join(sorted(names)) or "none has a name: use members[0]..."
            raise KeyPathError(f"{key!r} names no member after `members.` (members: {known})")
        index = next(i for i, m in enumerate(members) if isinstance(m, dict) and m.get("name") == name)
        path = ["members", index]
        rest = tail[len(name) + 1:]
        if not rest:
            raise KeyPathError(f"{key!r} names a whole member; name one of its keys (train.learning_rate, ...)")
    for part in rest.split("."):
        m = _PART.fullmatch(part)
        if m is None:
            raise KeyPathError(f"{key!r}: {part!r} is not a key (letters, digits, _ and -, then [index] if a list)")
        path.append(m.group(1))
        path += [int(i) for i in re.findall(r"\[(\d+)\]", m.group(2))]
    return path


def set_key(doc: dict, key: str, value: Any, list_size: int | None = None) -> dict:
    """A copy of the raw spec `doc` with `key` set to `value`. `list_size` (the number of classes)
    lets `loss.alpha[1]` spread a single alpha over the classes first; without it, that is an error."""
    out = copy.deepcopy(doc)
    path = path_of(out, key)
    node: Any = out
    for i, part in enumerate(path[:-1]):
        nxt = path[i + 1]
        where = _shown(path[: i + 1])
        if isinstance(part, int):
            if not isinstance(node, list) or not 0 <= part < len(node):
                raise KeyPathError(f"{where} does not exist ({_size(node)})")
            child = node[part]
        else:
            if not isinstance(node, dict):
                raise KeyPathError(f"{_shown(path[:i])} is a value, not a table")
            if part not in node or node[part] is None:
                # a per-class list the spec leaves out starts at the neutral weight, 1.0 for every class
                node[part] = ([1.0] * list_size if list_size else []) if isinstance(nxt, int) else {}
            child = node[part]
        if isinstance(nxt, int) and not isinstance(child, list):
            if isinstance(child, (int, float)) and not isinstance(child, bool) and list_size:
                child = [child] * list_size  # a single value for every class, spread to set one class
            elif list_size:
                raise KeyPathError(f"{where} is {child!r}, not a list or a number; give it one value per class "
                                "in the spec to set one of them")
            else:
                raise KeyPathError(f"{where} is {child!r}, not a list; give it as a list (one value per class) "
                                "in the spec to set one item")
            node[part] = child
        node = child
    last = path[-1]
    if isinstance(last, int):
        if not isinstance(node, list) or not 0 <= last < len(node):
            raise KeyPathError(f"{_shown(path)} does not exist ({_size(node)})")
        node[last] = value
    else:
        if not isinstance(node, dict):
            raise KeyPathError(f"{_shown(path[:-1])} is a value, not a table")
        node[last] = value
    return out


def get_key(doc: dict, key: str) -> Any:
    """The value at `key` in the raw spec, or None when the spec leaves it out."""
    node: Any = doc
    for part in path_of(doc, key):
        if isinstance(part, int):
            node = node[part] if isinstance(node, list) and 0 <= part < len(node) else None
        else:
            node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            return None
    return node


def _shown(path: list) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else p)
    return out


def _size(node) -> str:
    return f"it has {len(node)} items" if isinstance(node, list) else "it is not a list"
