"""Options added after runs were stored: how a stored spec reads them, and which values the spec
hash leaves out.

A plugin's option that changes how a member trains needs two rules once runs exist without it:

- A spec or `runner.json` that runner *stored* (validated with the `STORED` context: a refit reading
  its parent's spec, `load_checkpoint`) and that lacks the key was trained before the key existed,
  so it reads as what runner did then (`fill_stored`), not as today's default.
- The spec hash (serialised with the `HASHING` context) leaves the key out while it holds the value
  that reproduces what runner did before (`drop_for_hash`): an unchanged old spec, or one that asks
  for the old behaviour by name, continues the runs stored before, which trained exactly so; a new
  default is hashed, so no old run is ever continued as if it had trained with it.

Both live in the options model itself (a `model_validator(mode="before")` and a
`model_serializer(mode="wrap")`), next to the field; see `ScratchOptions.tokenizer` and
`FocalOptions.modulation`.
"""

from __future__ import annotations

from typing import Any

STORED = "runner_stored"  # validation context: reading back what runner stored
HASHING = "runner_spec_hash"  # serialisation context: the form of the spec that is hashed


def _has(info, key: str) -> bool:
    context = getattr(info, "context", None)
    return isinstance(context, dict) and bool(context.get(key))


def fill_stored(data: Any, info, key: str, before: Any) -> Any:
    """`data` with `key` set to `before` when it is stored data that predates `key`."""
    if isinstance(data, dict) and key not in data and _has(info, STORED):
        return {**data, key: before}
    return data


def drop_for_hash(d: dict, info, key: str, before: Any) -> dict:
    """`d` without `key` in the hashed form when it holds `before`, the value old runs trained with."""
    if _has(info, HASHING) and key in d and d[key] == before:
        d = dict(d)
        del d[key]
    return d
