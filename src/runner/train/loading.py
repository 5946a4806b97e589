"""What loading a pretrained checkpoint left out: the weights the model starts at random (a new
classification head, a masked-LM head the checkpoint lacks) and the checkpoint's weights it did not
use (BERT's pooler under a masked-LM head).

transformers says this in a multi-line load report, which runner silences with the rest of its
logging (runner.core.quiet). A backbone that loads a checkpoint records it on the model with `record`
(the `hf` backbone does, from `from_pretrained(..., output_loading_info=True)`); the dry run says it
in one line per member (`head_line`) and refuses to adapt a model whose masked-LM head would be
random unless the spec opts in (`new_head`). A model without a record (a scratch model: nothing came
from a checkpoint) is not described.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

ATTRIBUTE = "runner_load_report"


@dataclass(frozen=True)
class LoadReport:
    """The weights one `from_pretrained` started at random (`new`: missing from the checkpoint, or of
    another shape there) and the checkpoint's weights it left unused (`unused`); `head` are the new
    ones outside the encoder (the task's head)."""

    source: str
    new: tuple[str, ...]
    unused: tuple[str, ...]
    head: tuple[str, ...]


def record(model, source: str, info: dict) -> None:
    """Keep transformers' loading info (`output_loading_info=True`) on `model` for the dry run."""
    mismatched = {k[0] if isinstance(k, (tuple, list)) else k for k in info.get("mismatched_keys") or ()}
    new = tuple(sorted({str(k) for k in info.get("missing_keys") or ()} | {str(k) for k in mismatched}))
    prefix = getattr(model, "base_model_prefix", "") or ""
    head = tuple(k for k in new if not prefix or not k.startswith(prefix + "."))
    report = LoadReport(str(source), new, tuple(sorted(str(k) for k in info.get("unexpected_keys") or ())), head)
    model.__dict__[ATTRIBUTE] = report  # a plain attribute: nn.Module keeps it out of the state dict


def of(model) -> LoadReport | None:
    """The report `record` left on `model`, or None (nothing was loaded from a checkpoint)."""
    return getattr(model, "__dict__", {}).get(ATTRIBUTE)


def brief(keys: tuple[str, ...] | list[str]) -> str:
    """Weight names in one short phrase: their common prefix once (`classifier.{bias, weight}`)."""
    if not keys:
        return "none"
    parts = [k.split(".") for k in sorted(keys)]
    common: list[str] = []
    for segments in zip(*parts):
        if len(set(segments)) > 1:
            break
        common.append(segments[0])
    common = common[:min(len(p) for p in parts) - 1]  # at least one segment of each name stays
    if len(parts) == 1 or not common:
        return ", ".join(".".join(p) for p in parts)
    return ".".join(common) + ".{" + ", ".join(".".join(p[len(common):]) for p in parts) + "}"


def head_line(member: str, report: LoadReport, seed: int) -> str:
    """One line: which weights a fine-tuned member starts at random, and which it did not use."""
    if report.head:
        said = f"the classification head is new: {brief(report.head)} (random, seed {seed})"
    else:
        said = "the classification head comes from the checkpoint"
    others = tuple(k for k in report.new if k not in report.head)
    if others:
        said += f"; also new: {brief(others)}"
    return f"{member}: {said}; not used from {report.source}: {brief(report.unused)}"


def uniform_loss(vocab_size: int) -> float:
    """ln(V): the cross-entropy of guessing every token of the vocabulary alike; a masked-LM loss above
    it is worse than knowing nothing, as an untrained head gives."""
    return math.log(max(vocab_size, 1))
