"""Reading what W&B wrote in offline mode: each `offline-run-*/run-<id>.wandb` file is W&B's own
transaction log (a LevelDB-style log of protobuf `Record`s, the file `wandb sync` uploads). wandb 0.31
no longer ships a Python reader of it, so this is one: the framing (a 7-byte file header, 32 KiB blocks,
a 7-byte header per chunk: CRC, length, type) is W&B's documented datastore format, and every record is
parsed with W&B's own protobuf classes (`wandb.proto.wandb_internal_pb2.Record`)."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

BLOCK = 32 * 1024
FILE_HEADER = 7  # ":W&B", a 2-byte magic, a version byte
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path) -> list[bytes]:
    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B datastore"
    out, pending, pos = [], b"", FILE_HEADER
    while pos + 7 <= len(data):
        left_in_block = BLOCK - pos % BLOCK
        if left_in_block < 7:  # the block's tail is padding
            pos += left_in_block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind == FULL:
            out.append(chunk)
        elif kind == FIRST:
            pending = chunk
        elif kind == MIDDLE:
            pending += chunk
        elif kind == LAST:
            out.append(pending + chunk)
            pending = b""
        else:  # zeros: the end of what was written
            break
    return out


@dataclass
class OfflineRun:
    """What one W&B offline run folder holds: the run's id, group, job type and name, its config,
    its history ({step: {key: value}}) and its summary."""

    run_id: str = ""
    group: str = ""
    job_type: str = ""
    name: str = ""
    config: dict = field(default_factory=dict)
    history: dict[int, dict] = field(default_factory=dict)
    summary: dict = field(default_factory=dict)
    artifacts: list[list[str]] = field(default_factory=list)


def _items(items) -> dict:
    """{key: value} of config, history or summary items (a key is `key`, or `nested_key`'s parts)."""
    return {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in items}


def read_run(folder: Path) -> OfflineRun:
    from wandb.proto import wandb_internal_pb2 as pb

    run = OfflineRun()
    for raw in records(next(folder.glob("run-*.wandb"))):
        rec = pb.Record()
        rec.ParseFromString(raw)
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            r = rec.run
            run.run_id, run.group, run.job_type, run.name = r.run_id, r.run_group, r.job_type, r.display_name
            run.config.update(_items(r.config.update))
        elif kind == "config":
            run.config.update(_items(rec.config.update))
        elif kind == "history":
            values = _items(rec.history.item)
            run.history.setdefault(int(values.get("_step", rec.history.step.num)), {}).update(values)
        elif kind == "summary":
            run.summary.update(_items(rec.summary.update))
        elif kind == "artifact":
            run.artifacts.append([e.path for e in rec.artifact.manifest.contents])
    return run


def read_runs(wandb_dir: Path) -> list[OfflineRun]:
    """Every offline run under `wandb_dir` (the folder holding `wandb/`), in the order they were made."""
    return [read_run(f) for f in sorted((wandb_dir / "wandb").glob("offline-run-*"))]
