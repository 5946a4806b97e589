"""ONNX members: `runner export --onnx [--quantize int8]` writes them, `Predictor` runs them with ONNX
Runtime when the export has them and `onnxruntime` is installed (the `onnx` extra).

Export: each member's model goes through torch's ONNX exporter (`torch.onnx.export(dynamo=True)`,
which traces with torch.export), with the batch and sequence dimensions dynamic (up to the run's
max_length), as `model.onnx` beside its safetensors; it outputs the logits. `--quantize int8` adds
`model.int8.onnx`, ONNX Runtime's dynamic quantization of it (int8 weights, activations quantized
per batch), and the export then runs that one. The manifest names the file each member runs
(`members[].onnx`); the tokenizer stays the member's own, so texts are tokenized and batched as with
torch (runner.use.predict), and only the forward pass changes.
"""

from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from runner.errors import InputError
from runner.train.backbones import check_files, load_checkpoint

ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
QUANTIZE = ("int8",)


def available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def check_export_args(onnx: bool, quantize: str | None) -> None:
    """InputError naming --onnx or --quantize before anything is written."""
    if quantize is not None and quantize not in QUANTIZE:
        raise InputError(f"--quantize {quantize!r}: one of {', '.join(QUANTIZE)}")
    if quantize is not None and not onnx:
        raise InputError("--quantize: quantization applies to the ONNX models; add --onnx")
    if onnx:
        missing = [name for name in ("onnx", "onnxscript", "onnxruntime") if not _importable(name)]
        if missing:
            raise InputError(f"--onnx needs {', '.join(missing)}: pip install 'runner[onnx]'")


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


class _Logits:
    """The classifier with positional inputs and the logits as output: what the exporter traces."""

    def __new__(cls, model, names: list[str]):
        import torch

        class Wrapped(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.model = model

            def forward(self, input_ids, attention_mask, token_type_ids=None):
                inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
                if token_type_ids is not None:
                    inputs["token_type_ids"] = token_type_ids
                out = self.model(**inputs)
                return out["logits"] if isinstance(out, dict) else out.logits

        return Wrapped()


def write_onnx(folder: Path, max_length: int, quantize: str | None, registry=None, plugins_dir=None) -> str:
    """Export the member checkpoint in `folder` as ONNX (module docstring); returns the file it runs."""
    import torch
    from torch.export import Dim

    model, tokenizer, _ = load_checkpoint(folder, registry=registry, plugins_dir=plugins_dir)
    model.eval()
    sample = tokenizer(["an example text to trace the model with", "a second one"], padding=True,
                       truncation=True, max_length=max_length, return_tensors="pt")
    names = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in sample]
    batch, seq = Dim("batch", min=1, max=65536), Dim("seq", min=1, max=max(2, max_length))
    shapes = {k: {0: batch, 1: seq} for k in names}
    with warnings.catch_warnings(), torch.inference_mode(False), _quiet_exporter():
        warnings.simplefilter("ignore")
        try:
            program = torch.onnx.export(_Logits(model, names), tuple(sample[k] for k in names), input_names=names,
                                        output_names=["logits"], dynamic_shapes=shapes, dynamo=True, verbose=False)
        except Exception as e:  # the exporter refuses an operator or a shape: the backbone cannot be exported
            raise InputError(f"--onnx: member {folder.name}'s model cannot be exported to ONNX "
                             f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); export without "
                             "--onnx") from None
        program.save(str(folder / ONNX_FILE))
    if quantize != "int8":
        return ONNX_FILE
    with _quiet_exporter():
        return _quantized(folder)


def _quantized(folder: Path) -> str:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # the exporter's intermediate shapes (value_info) trip the quantizer's shape inference (a fixed size
    # against a dynamic one): it infers them again without them
    graph = onnx.load(str(folder / ONNX_FILE))
    del graph.graph.value_info[:]
    bare = folder / ".bare.onnx"
    onnx.save(graph, str(bare))
    try:
        quantize_dynamic(str(bare), str(folder / INT8_FILE), weight_type=QuantType.QInt8)
    finally:
        bare.unlink(missing_ok=True)
    return INT8_FILE


@contextmanager
def _quiet_exporter():
    """The exporter and quantizer log through `logging` (optional operators they skip, advice): not for
    the user of an export."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "root", "onnxscript")]
    before = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, before):
            lg.setLevel(level)


class OnnxModel:
    """An ONNX Runtime session called like the torch model: `model(**inputs)` -> {"logits": tensor}."""

    def __init__(self, path: Path, threads: int):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # a damaged or foreign file: ONNX Runtime says what it could not read
            raise InputError(f"{path}: ONNX Runtime cannot load it ({type(e).__name__}: "
                             f"{str(e).splitlines()[0] if str(e) else ''}); export the run again") from None
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.path = path

    def to(self, device):  # the session runs where ONNX Runtime runs it (the CPU)
        return self

    def eval(self):
        return self

    def __call__(self, **inputs):
        import torch

        feed = {k: np.ascontiguousarray(inputs[k].cpu().numpy(), dtype=np.int64) for k in self.inputs}
        return {"logits": torch.from_numpy(self.session.run(None, feed)[0])}


def load_onnx_member(folder: Path, file: str, threads: int):
    """(OnnxModel, tokenizer, runner.json) of an exported member that has an ONNX file; the checks of
    load_checkpoint on the folder (its JSON files; the tokenizer loaded without code)."""
    from transformers import AutoTokenizer

    info = check_files(folder)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False, local_files_only=True)
    except Exception as e:  # any of the tokenizer's files unreadable or inconsistent
        raise InputError(f"{folder}: the tokenizer cannot be loaded ({type(e).__name__}); its files are "
                         "damaged: export the run again") from None
    return OnnxModel(folder / file, threads), tokenizer, info
