"""Reading a spec file: TOML, then structure (pydantic), then resolution against the registry.

Loading happens in steps so that every problem of a file is reported at once: when the structure is
wrong, the checks that need the registry still run on the file with its broken values removed.
"""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from runner.errors import SpecError
from runner.spec.keys import KeyPathError, set_key
from runner.spec.models import Spec
from runner.spec.problems import LocatedError, Problem, dedupe, loc_text, pydantic_problems
from runner.spec.resolve import ResolvedSpec, resolve


def read_toml(path: Path) -> dict[str, Any]:
    if getattr(path, "inline", False):  # a spec given in Python (runner.spec.inline)
        return copy.deepcopy(path.document)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise SpecError(path, [("", "file not found")]) from None
    except IsADirectoryError:
        raise SpecError(path, [("", "is a folder, not a spec file")]) from None
    except (OSError, ValueError) as e:
        raise SpecError(path, [("", f"cannot be read: {getattr(e, 'strerror', None) or e}")]) from None
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise SpecError(path, [("", f"is not UTF-8 text (byte {e.start})")]) from None
    except tomllib.TOMLDecodeError as e:
        raise SpecError(path, [("", f"invalid TOML: {e}")]) from None
    except RecursionError:
        raise SpecError(path, [("", "invalid TOML: nested too deeply")]) from None


Overrides = tuple[tuple[str, object], ...]  # (dotted key, value) pairs from `--set KEY=VALUE`


def read_document(path: Path, overrides: Overrides = ()) -> tuple[dict[str, Any], list[Problem]]:
    """The spec file's TOML with the `--set` overrides applied (runner.spec.keys), and a problem for
    each override whose key names no place in the spec (that override is left out)."""
    data = read_toml(path)
    problems = []
    for key, value in overrides:
        try:
            data = set_key(data, key, value)
        except KeyPathError as e:
            problems.append((key, f"from --set: {e}"))
    return data, problems


def _blame(problems: list[Problem], overrides: Overrides) -> list[Problem]:
    """Say which problems come from a `--set` rather than from the file."""
    out = []
    for loc, msg in problems:
        key = next((k for k, _ in overrides if loc == k or loc.startswith((k + ".", k + "["))
                    or k.startswith((loc + ".", loc + "["))), None)
        out.append((loc, f"{msg} (set by --set {key})" if key else msg))
    return out


def load_spec(path: str | Path, overrides: Overrides = ()) -> Spec:
    """Parse and validate the structure of a spec file; raise SpecError listing every problem."""
    path = path if isinstance(path, Path) else Path(path)  # an InlineSpec keeps its document
    data, key_problems = read_document(path, overrides)
    try:
        spec = Spec.model_validate(data)
    except ValidationError as e:
        raise SpecError(path, key_problems + _blame(pydantic_problems(e, model=Spec), overrides)) from None
    problems = key_problems + member_problems(spec)
    if problems:
        raise SpecError(path, problems)
    return spec


def member_problems(spec: Spec) -> list[Problem]:
    """Explicit member names must differ, even in case only (they are folders on disk)."""
    problems = []
    seen: dict[str, int] = {}
    for i, m in enumerate(spec.members):
        if m.name is None:
            continue
        key = m.name.casefold()
        if key in seen:
            other = spec.members[seen[key]].name
            same = "duplicate member name" if other == m.name else "member names differing only in case"
            problems.append((f"members[{i}].name", f"{same} {m.name!r} (also members[{seen[key]}]); they name "
                                                   "folders on disk and rows in the store"))
        else:
            seen[key] = i
    return problems


def load_and_resolve(path: str | Path, registry, overrides: Overrides = ()) -> ResolvedSpec:
    """Both steps; on a structural problem, every problem the registry checks find too."""
    path = path if isinstance(path, Path) else Path(path)
    try:
        spec = load_spec(path, overrides)
    except SpecError as e:
        if any(loc == "" for loc, _ in e.problems):
            raise  # unreadable file or bad TOML: nothing more to check
        more = _blame(_problems_beyond_structure(path, registry, overrides), overrides)
        raise SpecError(path, dedupe(e.problems + more)) from None
    try:
        return resolve(spec, registry, path)
    except SpecError as e:
        raise SpecError(path, _blame(e.problems, overrides)) from None


def _problems_beyond_structure(path: Path, registry, overrides: Overrides = ()) -> list[Problem]:
    """Problems hidden behind structural ones: cross-field checks, member names, registry lookups.

    Each value pydantic rejects is removed (so its default applies) and the spec validated again, a
    few rounds at most; a missing required key ends the search, since nothing sensible can stand in
    for it. Checks that compare a removed value with another one are dropped: they would be about
    the default, not about the file.
    """
    data, _ = read_document(path, overrides)
    pruned: list[str] = []
    problems: list[Problem] = []
    for round_ in range(5):
        try:
            spec = Spec.model_validate(data)
        except ValidationError as e:
            if round_:
                # a missing key, or a table left too short, because a value was pruned: about the pruning
                problems.extend(
                    (loc, msg) for loc, msg in pydantic_problems(e, model=Spec)
                    if not (msg == "required key is missing" and loc in pruned)
                    and not any(p.startswith((loc + ".", loc + "[")) for p in pruned)
                )
            if not all(_prune(data, err, pruned) for err in e.errors()):
                return problems
            continue
        problems.extend(member_problems(spec))
        try:
            resolve(spec, registry, path)
        except SpecError as e:
            stale = {"swa.k"} if "train.epochs" in pruned else set()
            problems.extend(
                (loc, msg) for loc, msg in e.problems
                if loc not in stale and not any(loc == p or loc.startswith((p + ".", p + "[")) for p in pruned)
            )
        return problems
    return problems


def _prune(data: dict[str, Any], err, pruned: list[str]) -> bool:
    """Remove the value a pydantic error points at from the raw TOML data; False if it cannot be."""
    if err["type"] == "missing":
        return False
    ctx_err = (err.get("ctx") or {}).get("error")
    parts: list[Any] = ctx_err.loc.split(".") if isinstance(ctx_err, LocatedError) else list(err["loc"])
    # walk as deep as the data goes (union errors add branch names such as 'str' after the key)
    path, node = [], data
    for p in parts:
        if isinstance(node, dict) and isinstance(p, str) and p in node:
            path.append(p)
            node = node[p]
        elif isinstance(node, list) and isinstance(p, int) and 0 <= p < len(node):
            path.append(p)
            node = node[p]
        else:
            break
    while path and isinstance(path[-1], int):  # removing a list item would renumber the rest
        path.pop()
    if not path or path == ["members"] or path == ["name"]:
        return False
    parent = data
    for p in path[:-1]:
        parent = parent[p]
    del parent[path[-1]]
    pruned.append(loc_text(path))
    return True
