"""Applying a run, or a folder `runner export` wrote, to new texts: the prediction engine.

A `Predictor` loads the member checkpoints a `runner.use.choice.Choice` names once, and predicts:

- texts are tokenized once per distinct tokenizer (members trained with the same tokenizer share
  one tokenization and one set of padded batches);
- they are sorted by token count and cut into batches of `batch_size`, each padded to its longest
  text, as training's evaluation does (runner.train.evaluation.encode), so little is padded;
- each model runs under `torch.inference_mode`, and the softmax is runner.train.evaluation's, so a run's
  own test split comes back with the probabilities its epochs stored (to float rounding);
- the ensemble is the weighted mean of the members' probabilities, as runner.posthoc.ensemble builds it;
- `calibrated=True` applies the stored calibration (runner.posthoc.calibration.apply);
- an export made with `--onnx` runs its members' forward passes in ONNX Runtime (runner.use.onnx) when
  it is installed: the same tokenization, batches and ensemble.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from runner.core.maths import softmax
from runner.errors import InputError
from runner.posthoc.ensemble import mixture
from runner.train.backbones import load_checkpoint
from runner.train.evaluation import check_logits
from runner.use.choice import Choice, MemberChoice, check_calibrated
from runner.use.onnx import available, load_onnx_member

DEFAULT_BATCH_SIZE = 64
ENCODER_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@dataclass
class LoadedMember:
    choice: MemberChoice
    model: Any
    tokenizer: Any
    max_length: int
    tokenizer_key: str
    autocast: Any = None  # the half-precision dtype training evaluated with on a GPU, or None


def autocast_dtype(precision: str, device) -> Any:
    """The dtype Trainer evaluated with (runner.train.member.precision_args): half precision only on a GPU."""
    import torch

    if getattr(device, "type", str(device)) != "cuda":
        return None
    if precision == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)


def tokenizer_key(tokenizer, max_length: int) -> str:
    """Equal for tokenizers that turn every text into the same ids (so one tokenization serves both)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:  # a slow tokenizer: no cheap way to compare, so none is shared
        return f"object-{id(tokenizer)}"
    h = hashlib.sha256(backend.to_str().encode())
    h.update(repr((max_length, tokenizer.padding_side, tokenizer.pad_token_id, tokenizer.model_input_names,
                   getattr(tokenizer, "pad_token_type_id", 0))).encode())
    return h.hexdigest()


@dataclass
class Prediction:
    probs: np.ndarray  # (n, num_labels): the ensemble's (calibrated if asked)
    members: dict[str, np.ndarray]  # member -> (n, num_labels), calibrated if asked
    raw_members: dict[str, np.ndarray]  # member -> (n, num_labels) as the model gives them
    raw_probs: np.ndarray  # the ensemble before calibration
    calibrated: bool


class Predictor:
    """A run's (or an export's) ensemble, loaded: `predict_proba(texts)`, `predict(texts)`."""

    def __init__(self, choice: Choice, loaded: list[LoadedMember], batch_size: int | None = None, device=None,
                 engine: str = "torch"):
        self.choice = choice
        self.engine = engine  # torch | onnx: what runs the forward passes
        self.loaded = loaded
        # default: the batch size training evaluated with, so batches (and their padding) are the same
        self.batch_size = batch_size or next((m.eval_batch_size for m in choice.members if m.eval_batch_size),
                                             DEFAULT_BATCH_SIZE)
        self.device = device

    @classmethod
    def load(cls, choice: Choice, registry=None, plugins_dir=None, batch_size: int | None = None,
             device: str | None = None, on_missing_plugin: Callable[[InputError], InputError] | None = None,
             engine: str = "auto"):
        """Load every member's checkpoint. A backbone no loaded plugin registers is an InputError naming it.
        On a GPU a member runs in the half precision it was trained (and evaluated) in. `engine`: "auto"
        runs an export's ONNX files with ONNX Runtime when every member has one, the device is the CPU
        and onnxruntime is installed, torch otherwise; "onnx" insists (InputError when it cannot); "torch"."""
        import torch

        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        use_onnx = _onnx_engine(choice, engine, device)
        loaded = []
        for mc in choice.members:
            try:
                if use_onnx:
                    model, tokenizer, info = load_onnx_member(mc.path, mc.onnx, torch.get_num_threads())
                else:
                    model, tokenizer, info = load_checkpoint(mc.path, registry=registry, plugins_dir=plugins_dir)
            except InputError as e:
                raise (on_missing_plugin(e) if on_missing_plugin else e) from None
            model.to(device).eval()
            max_length = int(info.get("max_length") or choice.run.get("max_length") or 512)
            loaded.append(LoadedMember(mc, model, tokenizer, max_length, tokenizer_key(tokenizer, max_length),
                                       None if use_onnx else autocast_dtype(mc.precision, device)))
        return cls(choice, loaded, batch_size, device, "onnx" if use_onnx else "torch")

    @property
    def labels(self) -> list[str]:
        return list(self.choice.labels)

    @property
    def members(self) -> list[str]:
        return [m.choice.name for m in self.loaded]

    @property
    def weights(self) -> dict[str, float]:
        return {m: float(w) for m, w in zip(self.members, self.choice.weights)}

    def predict_proba(self, texts: Sequence[str], calibrated: bool = False) -> np.ndarray:
        """(len(texts), num_labels) ensemble probabilities; `calibrated` applies the stored calibration."""
        return self.run(texts, calibrated=calibrated).probs

    def predict(self, texts: Sequence[str], calibrated: bool = False) -> list[str]:
        """The predicted label name of each text."""
        labels = self.labels
        return [labels[i] for i in self.predict_proba(texts, calibrated).argmax(axis=1)]

    def check_calibrated(self, members: bool = False) -> None:
        check_calibrated(self.choice, members)

    def run(self, texts: Sequence[str], calibrated: bool = False,
            progress: Callable[[int], None] | None = None) -> Prediction:
        """Every member's and the ensemble's probabilities. `progress(k)` is told of each k texts done
        by one member (the total is len(texts) x members)."""
        texts = list(texts)
        if calibrated:
            check_calibrated(self.choice)
        raw = self._member_probs(texts, progress)
        stacked = np.stack([raw[m] for m in self.members])
        probs = mixture(stacked, self.choice.weights).astype(np.float32)  # as runner.posthoc.ensemble builds it
        probs /= probs.sum(axis=1, keepdims=True)
        members, out = dict(raw), probs
        if calibrated:
            out = self.choice.ensemble_calibration.apply(probs)
            members = {m: (self.choice.member_calibrations[m].apply(p) if m in self.choice.member_calibrations
                           else p) for m, p in raw.items()}
        return Prediction(out, members, raw, probs, calibrated)

    def _member_probs(self, texts: list[str], progress) -> dict[str, np.ndarray]:
        import torch

        groups: dict[str, list[LoadedMember]] = {}
        for m in self.loaded:
            groups.setdefault(m.tokenizer_key, []).append(m)
        k = len(self.choice.labels)
        out = {m.choice.name: np.empty((len(texts), k), dtype=np.float32) for m in self.loaded}
        if not texts:
            return out
        with torch.inference_mode():
            for group in groups.values():
                first = group[0]
                for rows, batch in _batches(first.tokenizer, texts, first.max_length, self.batch_size):
                    inputs = {key: torch.from_numpy(v).to(self.device) for key, v in batch.items()}
                    for m in group:
                        out[m.choice.name][rows] = _probs(m, inputs, k)
                        if progress is not None:
                            progress(len(rows))
        return out


def _onnx_engine(choice: Choice, engine: str, device) -> bool:
    if engine not in ("auto", "onnx", "torch"):
        raise InputError(f"engine={engine!r}: one of auto, onnx, torch")
    has = all(m.onnx for m in choice.members)
    if engine == "onnx":
        if not has:
            raise InputError("engine='onnx': this export has no ONNX models; export the run with --onnx")
        if not available():
            raise InputError("engine='onnx' needs onnxruntime: pip install 'runner[onnx]'")
    return engine != "torch" and has and available() and getattr(device, "type", "cpu") == "cpu"


def _probs(m: LoadedMember, inputs: dict, num_labels: int) -> np.ndarray:
    if m.autocast is not None:
        import torch

        with torch.autocast(device_type="cuda", dtype=m.autocast):
            output = m.model(**inputs)
    else:
        output = m.model(**inputs)
    logits = output["logits"] if isinstance(output, dict) else output.logits
    logits = logits.float().cpu().numpy()
    check_logits(logits, num_labels, m.choice.name)
    return softmax(logits)


def _encode(tokenizer, texts: list[str], max_length: int, chunk: int = 8192):
    """(flat ids per input key, offsets): every text tokenized with the call training's evaluation makes,
    kept as flat int64 arrays; texts go through the tokenizer `chunk` at a time, so the tokenizer's
    per-text objects never exist for the whole input at once (50,000 texts would hold hundreds of MB)."""
    parts: dict[str, list[np.ndarray]] = {}
    lengths = []
    for start in range(0, len(texts), chunk):
        enc = tokenizer(texts[start:start + chunk], truncation=True, max_length=max_length)
        for key in ENCODER_INPUTS:
            if key in enc:
                parts.setdefault(key, []).append(np.fromiter((t for ids in enc[key] for t in ids), dtype=np.int64))
        lengths.append(np.fromiter((len(ids) for ids in enc["input_ids"]), dtype=np.int64))
    flat = {key: np.concatenate(arrays) for key, arrays in parts.items()}
    lengths_all = np.concatenate(lengths)
    offsets = np.zeros(len(lengths_all) + 1, dtype=np.int64)
    np.cumsum(lengths_all, out=offsets[1:])
    return flat, offsets


def _batches(tokenizer, texts: list[str], max_length: int, batch_size: int):
    """(row indices, padded arrays) in order of token count, each batch padded to its longest text."""
    flat, offsets = _encode(tokenizer, texts, max_length)
    lengths = np.diff(offsets)
    order = np.argsort(lengths, kind="stable")
    pad = {"input_ids": tokenizer.pad_token_id or 0, "attention_mask": 0,
           "token_type_ids": getattr(tokenizer, "pad_token_type_id", 0)}
    left = getattr(tokenizer, "padding_side", "right") == "left"
    for start in range(0, len(texts), batch_size):
        rows = order[start:start + batch_size]
        lens = lengths[rows]
        width = int(lens.max())
        # where each token goes: row i, column j < lens[i] (shifted right when padding on the left)
        row_of = np.repeat(np.arange(len(rows)), lens)
        col = np.arange(int(lens.sum())) - np.repeat(np.cumsum(lens) - lens, lens)
        src = np.repeat(offsets[rows], lens) + col
        if left:
            col = col + np.repeat(width - lens, lens)
        batch = {}
        for key, values in flat.items():
            arr = np.full((len(rows), width), pad[key], dtype=np.int64)
            arr[row_of, col] = values[src]
            batch[key] = arr
        yield rows, batch
