"""Read back an offline W&B run file (`run-<id>.wandb`), so tests assert what was logged, not assume it.

wandb ships no reader: the file is a 7-byte header, then LevelDB-log framing (32 KiB blocks; each chunk a
7-byte header of crc32, uint16 LE length and a type: 1 full, 2 first, 3 middle, 4 last) around serialized
`wandb_internal_pb2.Record` messages.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

BLOCK = 32 * 1024
FILE_HEADER = 7
CHUNK_HEADER = 7


def _payloads(data: bytes):
    pos, pending = FILE_HEADER, b""
    while pos + CHUNK_HEADER <= len(data):
        room = BLOCK - pos % BLOCK
        if room < CHUNK_HEADER:  # block trailer padding
            pos += room
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + CHUNK_HEADER])
        body = data[pos + CHUNK_HEADER:pos + CHUNK_HEADER + length]
        pos += CHUNK_HEADER + length
        if kind == 0 and length == 0:
            continue
        if kind == 1:
            yield body
        elif kind == 2:
            pending = body
        elif kind == 3:
            pending += body
        elif kind == 4:
            yield pending + body
            pending = b""


def _key(item) -> str:
    """Keys with a '/' (e.g. 'val/AP') may arrive split into nested_key parts."""
    return item.key or "/".join(item.nested_key)


def read_run(path: Path) -> dict:
    """group, job_type, config and the logged history keys/values of one offline run file."""
    from wandb.proto import wandb_internal_pb2

    run: dict = {"group": None, "job_type": None, "config": {}, "history": [], "summary": {}}
    for payload in _payloads(Path(path).read_bytes()):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(payload)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run["group"], run["job_type"] = record.run.run_group, record.run.job_type
            run["name"] = record.run.display_name
            for item in record.run.config.update:
                run["config"][item.key] = json.loads(item.value_json)
        elif kind == "config":
            for item in record.config.update:
                run["config"][item.key] = json.loads(item.value_json)
        elif kind == "history":
            run["history"].append({_key(item): json.loads(item.value_json) for item in record.history.item})
        elif kind == "summary":
            for item in record.summary.update:
                run["summary"][_key(item)] = json.loads(item.value_json)
    return run


def find_runs(wandb_root: Path) -> list[Path]:
    return sorted(Path(wandb_root).rglob("run-*.wandb"))
