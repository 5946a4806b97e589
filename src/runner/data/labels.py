"""From raw label cells to class ids: the rules every dataset loader's labels go through.

A cell is one of:

- missing: None, NaN, or text that is empty or only spaces;
- a class *name*: text, taken exactly as written (case and spaces count); `true`/`false` (JSON or
  parquet booleans) are the names "true" and "false";
- an *integer*: an int, or a float with an integral value below 2**53 (2.0 is the integer 2);
  integers wider than 128 bits are an error;
- anything else is an error naming the file, the row and the column: a float that is not integral
  (1.5, inf), a list, an object/struct, bytes, a date... A non-integral float is accepted only when
  its text (Python's shortest form, "1.5") is a declared label name.

Label set and ids:

- Declared names (`[data].labels`, or names a loader supplies such as the synthetic loader's) always
  win. A cell is looked up first as a name (an integer by its decimal text, so 2011 matches a name
  "2011"), then an integer in 0..n-1 is taken as an index into the names. Anything else is an error.
  A declared class may have no examples at all.
- Without declared names the label set comes from the train split. When every train label is an
  integer and the distinct values are exactly 0..n-1, they are the class ids and the names are
  "0".."n-1". Otherwise every value is a class name (an integer's name is its decimal text, so 7 and
  "7" are one class), sorted with integer names first in numeric order (years 1999, 2005, 2011 become
  the classes "1999", "2005", "2011") and then the other names in code-point order. Nothing is
  allocated in proportion to a label's value. A valid or test label that never occurs in the train
  split is an error (usually a typo; declare it in `[data].labels` to keep it).
"""

from __future__ import annotations

import difflib
import math
import numbers
import re
from decimal import Decimal

import numpy as np

_INT_NAME = re.compile(r"-?(0|[1-9][0-9]{0,37})")  # the decimal text of an integer label


class LabelValueError(ValueError):
    """A cell that cannot be a label; the message completes "column 'label' ..."."""


def describe(value) -> str:
    """A short phrase for a value of the wrong kind: `a list ([1, 2])`, `bytes (b'x')`."""
    kind = {list: "a list", tuple: "a list", dict: "an object (a JSON object or parquet struct)",
            bytes: "binary data", bytearray: "binary data"}.get(type(value))
    if kind is None:
        name = type(value).__name__
        kind = "a number" if isinstance(value, numbers.Number) else f"{'an' if name[0] in 'aeiou' else 'a'} {name}"
    text = repr(value)
    return f"{kind} ({text[:60] + '...' if len(text) > 60 else text})"


def shown(value, limit: int = 60) -> str:
    """`repr(value)` cut to `limit` characters: an error quotes a cell or a column name of a data file to
    find it by, never a whole line of the file (a spec may point at any file, /etc/passwd included)."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 4] + "...'"


def shown_names(names: list, most: int = 20) -> str:
    """A file's column names or keys as an error lists them: each cut to 40 characters, at most `most`."""
    cut = [shown(n, 40) for n in list(names)[:most]]
    return "[" + ", ".join(cut) + (", ..." if len(names) > most else "") + "]"


def label_key(value, declared: frozenset[str] = frozenset()) -> int | str | None:
    """A cell as an integer label, a class name, or None when missing; LabelValueError otherwise."""
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, str):
        if not value.strip():
            return None
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise LabelValueError(f"holds text that is not valid Unicode ({value!r})") from None
        return value
    if isinstance(value, numbers.Integral):
        value = int(value)
        if value.bit_length() > 128:
            raise LabelValueError("holds an integer too large to be a class label; store the labels as text")
        return value
    if isinstance(value, (numbers.Real, Decimal)):
        value = float(value)
        if math.isnan(value):
            return None
        if value.is_integer() and abs(value) < 2**53:
            return int(value)
        if str(value) in declared:
            return str(value)
        if value.is_integer():
            raise LabelValueError(f"holds the number {value}, too large to be an exact integer in floating point; "
                                  "store integer labels as integers or as text")
        raise LabelValueError(
            f"holds the number {value}, which is not an integer; a class label is text or an integer "
            f"(list \"{value}\" in [data].labels if it is a class name)")
    raise LabelValueError(f"holds {describe(value)}; a label must be text or an integer")


def _order(name: str):
    return (0, int(name), name) if _INT_NAME.fullmatch(name) else (1, 0, name)


def infer_names(train_keys) -> list[str]:
    """The label names when none are declared, from the train split's (non-missing) keys."""
    distinct = set(train_keys)
    n = len(distinct)
    if n and all(isinstance(k, int) for k in distinct) and min(distinct) == 0 and max(distinct) == n - 1:
        return [str(i) for i in range(n)]  # n is the number of distinct values, never a value itself
    return sorted({str(k) for k in distinct}, key=_order)


class LabelMap:
    """Names and the id of each key; `declared` turns on lookup by index (see the module's rules)."""

    def __init__(self, names: list[str], declared: bool):
        self.names = names
        self.declared = declared
        self._by_name = {name: i for i, name in enumerate(names)}

    def id_of(self, key: int | str) -> int | None:
        hit = self._by_name.get(str(key))
        if hit is None and self.declared and isinstance(key, int) and 0 <= key < len(self.names):
            return key
        return hit

    def why_not(self, key: int | str) -> str:
        """Why `key` has no id: the end of an error message."""
        folded = [n for n in self.names if n.casefold() == str(key).strip().casefold()]
        close = folded or difflib.get_close_matches(str(key), self.names[:1000], n=1, cutoff=0.8)
        hint = (f" (labels are case- and space-sensitive: did you mean {folded[0]!r}?)" if folded else
                f" (did you mean {close[0]!r}?)" if close else "")
        if not self.declared:
            return (f"which does not occur in the train split{hint}; the model could never learn it: fix the row, "
                    "or list every label in [data].labels to keep it")
        shown = self.names if len(self.names) <= 20 else self.names[:20] + ["..."]
        index = (f"; an integer is taken as an index only in 0..{len(self.names) - 1}"
                 if isinstance(key, int) else "")
        return f"which is not in the label set {shown}{hint}{index}; fix the row or list every label in [data].labels"
