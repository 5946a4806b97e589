"""How spec problems read: `key.path: message` pairs from pydantic errors, value descriptions,
"did you mean" hints. Every function here is pure text; `SpecError` (runner.errors) renders the list
as one paragraph naming the file."""

from __future__ import annotations

import difflib
import typing

from pydantic import BaseModel, ValidationError

Problem = tuple[str, str]  # (key path such as "members[1].options.hidden_size", message)


class LocatedError(ValueError):
    """A cross-field error that knows which key it belongs to (pydantic would file it under the root)."""

    def __init__(self, loc: str, msg: str):
        self.loc, self.msg = loc, msg
        super().__init__(msg)


def loc_text(parts) -> str:
    """("members", 1, "name") -> "members[1].name"."""
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += ("." if out else "") + str(p)
    return out


def join(prefix: str, loc: str) -> str:
    if not prefix:
        return loc
    if not loc:
        return prefix
    return prefix + ("" if loc.startswith("[") else ".") + loc


def pydantic_problems(err: ValidationError, prefix: str = "", model=None) -> list[Problem]:
    """Each error as (key path, message); `model`, the pydantic model validated, lets an unknown key
    say which known key it may be a typo of."""
    problems = []
    for e in err.errors():
        ctx_err = (e.get("ctx") or {}).get("error")
        if isinstance(ctx_err, LocatedError):
            problems.append((join(prefix, ctx_err.loc), ctx_err.msg))
            continue
        loc = [p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-after["))]
        # pydantic files a Literal|list union error under both branches; keep the message readable
        loc = [p for p in loc if not (isinstance(p, str) and (p.startswith(("literal[", "list[", "function-"))
                                                             or p in ("str", "float", "int", "bool")))]
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            close = typo_of(str(loc[-1]), known_keys(model, loc[:-1])) if model is not None and loc else ""
            msg = f"unknown key (did you mean {close}?)" if close else "unknown key"
        elif e["type"] == "missing":
            msg = "required key is missing"
        elif e["type"] == "finite_number":
            msg = f"must be a finite number, not {e.get('input')!r}"
        msg = msg.removeprefix("Value error, ")
        if e["type"].endswith("_type") and "input" in e:
            msg += f", not {describe(e['input'])}"
        problems.append((join(prefix, loc_text(loc)), msg))
    return dedupe(problems)


def known_keys(model, loc) -> list[str]:
    """The keys the table at `loc` (a path of names and list positions from `model` down) accepts;
    none where the path leaves pydantic models (a free-form table such as `options`)."""
    node = model
    for part in loc:
        node = _step(node, part)
        if node is None:
            return []
    node = _model_in(node)
    if node is None:
        return []
    return [f.alias or name for name, f in node.model_fields.items()]


def _model_in(annotation):
    """The pydantic model an annotation is, or holds as an option (`X | None`), or None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    models = [a for a in typing.get_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel)]
    return models[0] if len(models) == 1 else None


def _step(node, part):
    model = _model_in(node)
    if isinstance(part, str) and model is not None:
        field = model.model_fields.get(part) or next(
            (f for f in model.model_fields.values() if f.alias == part), None)
        return field.annotation if field is not None else None
    if isinstance(part, int):
        for a in (node, *typing.get_args(node)):
            if typing.get_origin(a) is list and typing.get_args(a):
                return typing.get_args(a)[0]
    return None


def describe(value) -> str:
    """How a TOML value of the wrong type reads in an error: `the string '32'`, `a table`..."""
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, str):
        shown = value if len(value) <= 60 else value[:57] + "..."
        return f"the string {shown!r}"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, (int, float)):
        text = repr(value)
        return f"the number {text if len(text) <= 40 else text[:37] + '...'}"
    return f"a {type(value).__name__}"


def close_matches(word: str, choices) -> str:
    found = difflib.get_close_matches(word, list(choices), n=2, cutoff=0.75)
    return " or ".join(repr(f) for f in found)


def typo_of(word: str, keys: list[str]) -> str:
    """The keys `word` may be a typo of: close spellings, or a key it abbreviates (`mlm_prob`)."""
    return close_matches(word, keys) or " or ".join(
        repr(k) for k in keys if len(word) >= 4 and k.startswith(word))[:200]


def unknown(kind: str, name: str, known: list[str]) -> str:
    close = close_matches(name, known)
    hint = f" (did you mean {close}?)" if close else ""
    shown = name if len(name) <= 60 else name[:57] + "..."
    return f"unknown {kind} {shown!r}{hint}; registered: {', '.join(known) or 'none'}"


def dedupe(problems: list[Problem]) -> list[Problem]:
    seen, out = set(), []
    for p in problems:
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out
