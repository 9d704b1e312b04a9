"""A minimal reader of TensorFlow (V2 "tensor bundle") checkpoints, without TensorFlow.

A checkpoint ``PREFIX`` is ``PREFIX.index``, an SSTable (LevelDB table format, uncompressed
blocks) mapping each variable name to a ``BundleEntryProto`` (dtype, shape, shard, offset, size),
and ``PREFIX.data-00000-of-00001`` holding the raw little-endian tensor bytes.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_BYTES = 48
DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 9: np.int64, 10: np.bool_, 19: np.float16}
"""TensorFlow ``DataType`` enum -> numpy dtype (the ones checkpoints of CNNs hold)."""


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    """Decode a base-128 varint at ``pos``; returns ``(value, next position)``."""
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _handle(buf: bytes, pos: int) -> tuple[tuple[int, int], int]:
    """A BlockHandle ``(offset, size)`` at ``pos``."""
    offset, pos = _varint(buf, pos)
    size, pos = _varint(buf, pos)
    return (offset, size), pos


def _block_entries(table: bytes, handle: tuple[int, int]) -> list[tuple[bytes, bytes]]:
    """Key/value pairs of one table block (prefix-compressed keys, restart array at the end)."""
    offset, size = handle
    if table[offset + size] != 0:
        raise ValueError("compressed checkpoint index blocks are not supported")
    block = table[offset: offset + size]
    (num_restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    end = len(block) - 4 - 4 * num_restarts
    entries, pos, key = [], 0, b""
    while pos < end:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        length, pos = _varint(block, pos)
        key = key[:shared] + block[pos: pos + unshared]
        pos += unshared
        entries.append((key, block[pos: pos + length]))
        pos += length
    return entries


def read_table(data: bytes) -> dict[bytes, bytes]:
    """Every key/value pair of an SSTable file's bytes."""
    footer = data[-FOOTER_BYTES:]
    if struct.unpack("<Q", footer[-8:])[0] != TABLE_MAGIC:
        raise ValueError("not an SSTable (bad magic number)")
    _, pos = _handle(footer, 0)  # metaindex block, unused
    index, _ = _handle(footer, pos)
    out = {}
    for _, value in _block_entries(data, index):
        out.update(_block_entries(data, _handle(value, 0)[0]))
    return out


def _fields(msg: bytes) -> list[tuple[int, int | bytes]]:
    """Protobuf wire-format fields ``(number, value)``: varints, fixed32/64 and byte strings."""
    out, pos = [], 0
    while pos < len(msg):
        tag, pos = _varint(msg, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(msg, pos)
        elif wire == 1:
            value, pos = struct.unpack_from("<Q", msg, pos)[0], pos + 8
        elif wire == 5:
            value, pos = struct.unpack_from("<I", msg, pos)[0], pos + 4
        elif wire == 2:
            length, pos = _varint(msg, pos)
            value, pos = msg[pos: pos + length], pos + length
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        out.append((number, value))
    return out


def _entry(msg: bytes) -> dict:
    """Decode a ``BundleEntryProto``: dtype, shape, shard_id, offset, size."""
    entry = {"dtype": 0, "shape": [], "shard_id": 0, "offset": 0, "size": 0}
    for number, value in _fields(msg):
        if number == 1:
            entry["dtype"] = value
        elif number == 2:
            entry["shape"] = [dict(_fields(dim)).get(1, 0) for n, dim in _fields(value) if n == 2]
        elif number in (3, 4, 5):
            entry[("shard_id", "offset", "size")[number - 3]] = value
        elif number == 7:
            raise ValueError("sliced checkpoint variables are not supported")
    return entry


def read_checkpoint(prefix: str | Path, skip_suffixes: tuple[str, ...] = ("/Adam", "/Adam_1"),
                    ) -> dict[str, np.ndarray]:
    """All variables of the TF checkpoint ``prefix`` as numpy arrays, by name.

    Args:
        prefix: Checkpoint prefix (``PREFIX.index`` must exist; for ``musicnn`` the prefix is the
            model folder plus ``/``, so the files are named ``.index`` and ``.data-...``).
        skip_suffixes: Optimizer slots and other variables to leave out.
    """
    prefix = str(prefix)
    table = read_table(Path(prefix + ".index").read_bytes())
    header = dict(_fields(table.pop(b"", b"")))
    shards = [Path(f"{prefix}.data-{i:05d}-of-{header.get(1, 1):05d}").read_bytes()
              for i in range(header.get(1, 1))]
    variables = {}
    for key, value in sorted(table.items()):
        name = key.decode()
        if name.endswith(skip_suffixes):
            continue
        entry = _entry(value)
        if entry["dtype"] not in DTYPES:
            continue
        raw = shards[entry["shard_id"]][entry["offset"]: entry["offset"] + entry["size"]]
        variables[name] = np.frombuffer(raw, DTYPES[entry["dtype"]]).reshape(entry["shape"])
    return variables
