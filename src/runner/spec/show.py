"""The resolved spec as TOML: what `runner validate --show-spec` prints, a spec file in its own right.

It is the stored spec (`ResolvedSpec.to_dict`, every default filled in and each member's own values)
without what TOML cannot hold or a spec may not say: keys whose value is unset (TOML has no null; an
unset key reads back as unset) and `selection.resolved`, which runner derives from `[selection]`.
Read back, it validates to the same spec hash.
"""

from __future__ import annotations

from typing import Any

import tomli_w


def spec_toml(resolved) -> str:
    d = resolved.to_dict()
    d.get("selection", {}).pop("resolved", None)
    head = (f"# {resolved.path}, resolved: every default filled in, each member's own values; keys left unset "
            "are not shown\n")
    return head + tomli_w.dumps(_without_none(d), multiline_strings=False)


def _without_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(v) for v in value]
    return value
