"""Member names: explicit ones as written, automatic ones made safe and unique by construction.

A member's name is a folder (runs/<run_id>/<member>/) and a key in every table, so two members may
never share one, not even after case folding (a case-insensitive file system would merge `Bert` and
`bert`), and an automatic name is always a safe path component: the model's last path component or
the backbone, with anything outside `A-Z a-z 0-9 _ . -` replaced, a letter or digit first, at most
100 characters; never `.` or `..`.
"""

from __future__ import annotations

import re
from pathlib import PurePath

MAX_NAME = 100
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]+")


def safe_name(text: str, fallback: str = "member") -> str:
    """`text` as a name matching the spec's NAME_PATTERN (`klue/bert-base` -> `bert-base`)."""
    name = _UNSAFE.sub("-", text).strip("-._")
    name = name[:MAX_NAME].rstrip("-._")
    return name if name and name[0].isalnum() else fallback


def _base(member) -> str:
    if member.name:
        return member.name
    if member.model:
        parts = [p for p in PurePath(member.model.replace("\\", "/")).parts if p not in ("", ".", "..", "/")]
        if parts:
            return safe_name(parts[-1], safe_name(member.backbone))
    return safe_name(member.backbone)


def member_names(members) -> list[str]:
    """One name per member: explicit names kept, automatic ones unique among all (case-insensitively).

    An automatic name that is taken (by an explicit name, or by another member's automatic name)
    gets the smallest free suffix `-1`, `-2`...; names that nobody shares are reserved first, so
    `m1/bert-base`, `m2/bert-base`, `m3/bert-base-1` become `bert-base-2`, `bert-base-3`, `bert-base-1`.
    Duplicate explicit names are left for the spec check to report.
    """
    bases = [_base(m) for m in members]
    folded: dict[str, int] = {}
    for b in bases:
        folded[b.casefold()] = folded.get(b.casefold(), 0) + 1
    taken = {m.name.casefold() for m in members if m.name}
    taken |= {b.casefold() for m, b in zip(members, bases) if not m.name and folded[b.casefold()] == 1}
    names = []
    for m, b in zip(members, bases):
        if m.name or folded[b.casefold()] == 1:
            names.append(b)
            continue
        k = 1
        stem = b[: MAX_NAME - 6]
        while f"{stem}-{k}".casefold() in taken:
            k += 1
        names.append(f"{stem}-{k}")
        taken.add(f"{stem}-{k}".casefold())
    return names
