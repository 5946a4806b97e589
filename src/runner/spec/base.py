"""What every spec table builds on: `Strict` (TOML's real types, no unknown keys, no inf or nan),
`Text` (a string with no control characters, at most 4096 characters) and `MAX_SEED`."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict

MAX_SEED = 2**32 - 1  # numpy's legacy RNG (seeded by transformers.set_seed) takes 0 .. 2**32 - 1


def _text(value: str) -> str:
    """Strings that reach the file system or a tokenizer: no NUL or other control characters."""
    bad = next((c for c in value if ord(c) < 32 and c not in "\t"), None)
    if bad is not None:
        raise ValueError(f"contains the control character {bad!r}")
    if len(value) > 4096:
        raise ValueError(f"is {len(value)} characters long; at most 4096")
    return value


Text = Annotated[str, AfterValidator(_text)]


class Strict(BaseModel):
    # strict: TOML has real types, so `batch_size = "32"` is a mistake to report, not a string to coerce
    # (an int is still accepted where a float is expected). No inf or nan anywhere: no field means them.
    model_config = ConfigDict(extra="forbid", validate_default=True, strict=True, allow_inf_nan=False)
