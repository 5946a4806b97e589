"""The tokenizer files runner ships beside a member's weights (its `selected/` and `swa/` folders, and
`runner export`'s copies) say how runner tokenizes for that member: truncation at the member's own
`max_length`, and no fixed padding.

A pretrained tokenizer's `tokenizer.json` keeps whatever truncation and padding its author left set
(all-MiniLM-L6-v2's: pad every text to 128, truncate at 128), and transformers saves it as it was
loaded. runner tokenizes with `truncation=True, max_length=[data] max_length` and pads each batch to
its longest text, so plain `tokenizers.Tokenizer.from_file` on those files would cut and pad
otherwise. `fit_to_max_length` rewrites them to runner's settings: `tokenizers` then truncates at
`max_length` by itself, and transformers (which sets truncation on every call) truncates there with
`truncation=True` (`pipeline(..., truncation=True)`), since `model_max_length` is `max_length` too.
"""

from __future__ import annotations

import json
from pathlib import Path

TOKENIZER_JSON = "tokenizer.json"
TOKENIZER_CONFIG = "tokenizer_config.json"


def fit_to_max_length(directory: Path, max_length: int) -> None:
    """Set truncation at `max_length` and no padding in the tokenizer files of `directory` (those it has)."""
    directory = Path(directory)
    path = directory / TOKENIZER_JSON
    if path.is_file():
        doc = json.loads(path.read_text(encoding="utf-8"))
        before = doc.get("truncation") or {}
        doc["truncation"] = {"direction": before.get("direction", "Right"), "max_length": int(max_length),
                             "strategy": "LongestFirst", "stride": 0}
        doc["padding"] = None
        _write(path, doc)
    path = directory / TOKENIZER_CONFIG
    if path.is_file():
        config = json.loads(path.read_text(encoding="utf-8"))
        config["model_max_length"] = int(max_length)
        if "max_length" in config:  # transformers 5 saves the backend's length among the init arguments
            config["max_length"] = int(max_length)
        _write(path, config)


def _write(path: Path, doc: dict) -> None:
    text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    if path.read_text(encoding="utf-8") != text:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
