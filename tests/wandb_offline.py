"""Read an offline W&B run (``offline-run-*/run-*.wandb``) without a server: its records, as
``wandb sync`` would upload them. The file is a LevelDB-style log of protobuf ``Record``s: a
7-byte header (``:W&B``, magic, version), then 32 KiB blocks of chunks, each with a 7-byte
header (CRC-32C, length, kind: full / first / middle / last)."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

from wandb.proto import wandb_internal_pb2

BLOCK = 32768
HEADER = struct.Struct("<4sHB")
CHUNK = struct.Struct("<IHB")
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path) -> Iterator[wandb_internal_pb2.Record]:
    data = Path(path).read_bytes()
    ident, magic, _ = HEADER.unpack_from(data)
    assert (ident, magic) == (b":W&B", 0xBEE1), f"{path} is not a W&B run file"
    pos, pending = HEADER.size, b""
    while pos + CHUNK.size <= len(data):
        if BLOCK - pos % BLOCK < CHUNK.size:  # too little room left in the block: padding
            pos += BLOCK - pos % BLOCK
            continue
        _, length, kind = CHUNK.unpack_from(data, pos)
        if kind == 0:  # zero-filled rest of the file
            break
        pending += data[pos + CHUNK.size : pos + CHUNK.size + length]
        pos += CHUNK.size + length
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def run_summary(path: Path) -> dict:
    """What a test needs of a run: group, tags, config keys (dotted, values JSON), the files it
    logged and its exit code (None: the run never finished)."""
    import json

    summary = {"group": None, "tags": [], "config": {}, "files": [], "exit_code": None}
    for record in records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            summary["group"], summary["tags"] = record.run.run_group, list(record.run.tags)
            _add_config(summary["config"], record.run.config)
        elif kind == "config":
            _add_config(summary["config"], record.config)
        elif kind == "files":
            summary["files"] += [f.path for f in record.files.files]
        elif kind == "exit":
            summary["exit_code"] = record.exit.exit_code
    summary["config"] = {k: json.loads(v) for k, v in summary["config"].items()}
    return summary


def _add_config(config: dict, update) -> None:
    for item in update.update:
        key = ".".join(item.nested_key) if item.nested_key else item.key
        config[key] = item.value_json
