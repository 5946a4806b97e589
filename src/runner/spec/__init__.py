"""The experiment spec: its models (models.py, on base.py; the [adapt], [compute] and [sweep] tables in
adapt.py, compute.py and sweep.py), how problems read (problems.py), member names (names.py),
resolution against the registry (resolve.py), reading a file (load.py), dotted keys (keys.py), the
JSON Schema (schema.py) and what old stored specs mean (compat.py).

Every problem of a file is reported at once as `file: key.path: message` in one `SpecError`.
"""

from runner.spec.load import load_and_resolve, load_spec, read_toml
from runner.spec.models import NAME_PATTERN, OWNED_TRAINER_ARGS, DataSpec, LossSpec, MemberSpec, Spec, TrainSpec
from runner.spec.resolve import ResolvedMember, ResolvedSpec, resolve

__all__ = [
    "NAME_PATTERN",
    "OWNED_TRAINER_ARGS",
    "DataSpec",
    "LossSpec",
    "MemberSpec",
    "ResolvedMember",
    "ResolvedSpec",
    "Spec",
    "TrainSpec",
    "load_and_resolve",
    "load_spec",
    "read_toml",
    "resolve",
]
