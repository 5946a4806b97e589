"""`[adapt]`: task-adaptive masked-LM pretraining before fine-tuning, cached by content.

Each adapting member has an *adaptation*: its backbone's masked-LM model (the backbone plugin's
`adapt` capability) trained on a corpus of the task's texts, then saved; fine-tuning starts from
the saved encoder (`BackboneContext.adapted`) with a new classification head.

- The corpus: the texts of the splits `texts` names (train and valid by default; test only when
  named, since that is transductive), then each `extra` file (one text per line, or a csv/jsonl/
  parquet with the text column). A seeded slice of it (a tenth, at most 2,000 texts) is held out.
- The key: a hash of everything that decides the adapted weights: backbone, model (and for a local
  folder its config and weight files' sizes and times), backbone options, special tokens, the adapt
  settings with their seed, and the corpus itself. `<backbone>-<16 hex>`.
- The cache: `adapted/<key>/` beside the store (safetensors, config, tokenizer, `adapt.json` with
  the MLM losses). Every member of every run with the same key reuses it; a refit reuses its
  parent's. Training happens in `adapted/<key>.partial/` (Trainer checkpoints each epoch, so a killed
  adaptation resumes) and is renamed into place when done. `stores.txt` lists every store that used
  the folder; `runner gc` removes the folders none of them references any more (`gc`).

The MLM loss of every adapt epoch is stored (tables `adaptations`, `adapt_losses`) and each member
records its `adapt_key`; runner.train.adapt_train does the training (`ensure`).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from runner.core.files import WHY, special_kind
from runner.data.inputs import EXTENSIONS, read_input, read_lines
from runner.errors import DataError, InputError, SpecError
from runner.spec.adapt import AdaptSpec
from runner.store import caches
from runner.store.filecheck import ADAPTED

FORMAT = "runner-adapt-1"
ADAPT_DIR = ADAPTED
INFO = "adapt.json"
MAX_HELDOUT = 2000


@dataclass
class Adaptation:
    """One member's adaptation, planned: its corpus, held-out slice and cache key."""

    member: str
    backbone: str
    model: str | None
    settings: AdaptSpec
    texts: list[str]  # what the MLM trains on
    heldout: list[str]  # a seeded slice of the corpus, never trained on
    sources: dict[str, int]  # split name or extra file -> texts taken from it
    corpus_hash: str
    key: str

    def info(self) -> dict[str, Any]:
        return {"format": FORMAT, "key": self.key, "backbone": self.backbone, "model": self.model,
                "settings": self.settings.model_dump(mode="json"), "sources": self.sources,
                "n_texts": len(self.texts), "n_heldout": len(self.heldout), "corpus_hash": self.corpus_hash}


def root_for(store_path: Path) -> Path:
    """adapted/ beside the store (runner.store.caches)."""
    return caches.root_for(store_path, ADAPT_DIR)


def plan_adaptations(resolved, registry, texts_by_split: dict[str, list[str]], text_column: str = "text"
                     ) -> dict[str, Adaptation]:
    """member name -> its Adaptation, for every member that adapts; SpecError for a split the data
    lacks or an unreadable extra file (all problems at once)."""
    problems, corpora, out = [], {}, {}
    for m in resolved.members:
        if m.adapt is None:
            continue
        k = json.dumps(m.adapt.model_dump(mode="json"), sort_keys=True)
        if k not in corpora:
            try:
                corpora[k] = _corpus(m.adapt, texts_by_split, resolved.path, text_column, m.adapt_loc, registry)
            except SpecError as e:
                problems.extend(e.problems)
                continue
        texts, sources, digest = corpora[k]
        train, heldout = _hold_out(texts, m.adapt.seed)
        backbone = registry.backbone(m.backbone)
        payload = {
            "format": FORMAT, "backbone": m.backbone, "plugin": backbone.plugin, "model": m.model,
            "model_files": _fingerprint(m.model), "options": m.options_dict(hashed=True),
            "special_tokens": list(resolved.spec.data.special_tokens),
            # new_head permits an adaptation, it does not change its weights
            "settings": m.adapt.model_dump(mode="json", exclude={"texts", "extra", "new_head"}), "corpus": digest,
        }
        blob = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        prefix = "".join(c for c in m.backbone.lower() if c.isalnum())[:20] or "backbone"
        key = f"{prefix}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"
        out[m.name] = Adaptation(m.name, m.backbone, m.model, m.adapt, train, heldout, sources, digest, key)
    if problems:
        raise SpecError(resolved.path, problems)
    return out


def _corpus(adapt: AdaptSpec, texts_by_split: dict[str, list[str]], spec_path: Path, text_column: str,
            loc: str, registry) -> tuple[list[str], dict[str, int], str]:
    texts: list[str] = []
    sources: dict[str, int] = {}
    problems = []
    for split in adapt.texts:
        if split not in texts_by_split:
            problems.append((f"{loc}.texts", f"the data has no {split!r} split to adapt on"))
            continue
        taken = [t for t in texts_by_split[split] if t.strip()]
        texts += taken
        sources[split] = len(taken)
    for i, name in enumerate(adapt.extra):
        path = Path(name).expanduser()
        if not path.is_absolute():
            path = spec_path.resolve().parent / path
        try:
            taken = read_extra(path, text_column, registry)
        except (DataError, InputError, OSError, UnicodeDecodeError) as e:
            problems.append((f"{loc}.extra[{i}]", str(e).replace("INPUT ", "", 1)))
            continue
        texts += taken
        sources[str(path)] = len(taken)
    if not problems and len(texts) < 2:
        problems.append((f"{loc}.texts", f"{len(texts)} text(s) to adapt on; masked-LM needs at least 2"))
    if problems:
        raise SpecError(spec_path, problems)
    h = hashlib.sha256(f"{len(texts)}\x1e".encode())
    for t in texts:
        h.update(t.encode("utf-8", "surrogatepass"))
        h.update(b"\x1f")
    return texts, sources, h.hexdigest()


def read_extra(path: Path, text_column: str, registry) -> list[str]:
    """The texts of an `extra` file: csv/jsonl/parquet by extension (the text column), else one text
    per line (UTF-8; blank lines skipped)."""
    if not path.is_file():
        kind = special_kind(path)
        raise InputError(f"{path}: is {kind}, not a regular file; {WHY}" if kind else f"{path}: file not found"
                         if not path.exists() else f"{path}: is not a file")
    if path.suffix.lower() in EXTENSIONS:
        # no label column is read: the file may have one or not, with any values
        return read_input(path, [], registry, text_column=text_column, label_column="runner-no-label").texts
    return [text for _, text in read_lines(path, named="")]


def _hold_out(texts: list[str], seed: int) -> tuple[list[str], list[str]]:
    n = len(texts)
    k = min(MAX_HELDOUT, max(1, n // 10))
    held = set(np.random.default_rng(seed).choice(n, size=k, replace=False).tolist())
    return [t for i, t in enumerate(texts) if i not in held], [texts[i] for i in sorted(held)]


def _fingerprint(model: str | None) -> list | None:
    """For a local model folder: its config and weights' names, sizes and times, so replacing the
    model in place makes a new key. A Hub id is named by the id and options.revision alone."""
    if not model or not os.path.isdir(model):
        return None
    out = []
    for p in sorted(Path(model).iterdir()):
        if p.is_file() and (p.suffix in (".json", ".safetensors", ".txt", ".model")):
            st = p.stat()
            out.append([p.name, st.st_size, int(st.st_mtime)])
    return out


# -- the cache ---------------------------------------------------------------------------------


def cached(root: Path, key: str) -> Path | None:
    folder = root / key
    return folder if (folder / INFO).is_file() else None


# -- gc ----------------------------------------------------------------------------------------


def gc_plan(store, held=None) -> tuple[list[caches.GcEntry], list[Path]]:
    """Every adapted folder beside `store` with the stores still using it (those with a member adapted
    from it), and the interrupted (`.partial`) ones (runner.store.caches.gc_plan)."""
    return caches.gc_plan(store, root_for(store.path), INFO, key_of=lambda folder: folder.name,
                          keys_in=lambda s: s.adapt_keys(), held=held)
