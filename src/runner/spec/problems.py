"""How spec problems read: `key.path: message` pairs from pydantic errors, value descriptions,
"did you mean" hints. Every function here is pure text; `SpecError` (runner.errors) renders the list
as one paragraph naming the file."""

from __future__ import annotations

import difflib

from pydantic import ValidationError

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


def pydantic_problems(err: ValidationError, prefix: str = "") -> list[Problem]:
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
            msg = "unknown key"
        elif e["type"] == "missing":
            msg = "required key is missing"
        elif e["type"] == "finite_number":
            msg = f"must be a finite number, not {e.get('input')!r}"
        msg = msg.removeprefix("Value error, ")
        if e["type"].endswith("_type") and "input" in e:
            msg += f", not {describe(e['input'])}"
        problems.append((join(prefix, loc_text(loc)), msg))
    return dedupe(problems)


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
