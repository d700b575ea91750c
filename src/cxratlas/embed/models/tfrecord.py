"""Read `tf.train.Example` records from TFRecord files without TensorFlow.

The MIMIC-CXR "generalized image embeddings" release stores one TFRecord per image with the
vector in a `float_list` feature. TFRecord framing: uint64 length, uint32 masked CRC, payload,
uint32 masked CRC. The payload is protobuf: Example{1: Features{1: map<string, Feature>}},
Feature{1: BytesList, 2: FloatList, 3: Int64List}.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np


class TFRecordError(ValueError):
    pass


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise TFRecordError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes) -> Iterator[tuple[int, int, bytes | int]]:
    """(field number, wire type, value) of one protobuf message."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 2:
            n, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + n], pos + n
            if len(value) != n:
                raise TFRecordError("truncated length-delimited field")
        elif wire == 5:
            value, pos = buf[pos : pos + 4], pos + 4
        elif wire == 1:
            value, pos = buf[pos : pos + 8], pos + 8
        else:
            raise TFRecordError(f"unsupported protobuf wire type {wire}")
        yield field, wire, value


def _feature(buf: bytes) -> np.ndarray | list[bytes]:
    for kind, _, payload in _fields(buf):
        if kind == 1:  # BytesList
            return [v for f, _, v in _fields(payload) if f == 1]
        if kind == 2:  # FloatList: packed (wire 2) or one float per field (wire 5)
            parts = [np.frombuffer(v, "<f4") for f, _, v in _fields(payload) if f == 1]
            return np.concatenate(parts) if parts else np.zeros(0, np.float32)
        if kind == 3:  # Int64List
            values: list[int] = []
            for f, wire, v in _fields(payload):
                if f != 1:
                    continue
                if wire == 2:
                    p = 0
                    while p < len(v):
                        x, p = _varint(v, p)
                        values.append(x)
                else:
                    values.append(v)
            return np.asarray(values, np.int64)
    return []


def parse_example(payload: bytes) -> dict[str, np.ndarray | list[bytes]]:
    out: dict[str, np.ndarray | list[bytes]] = {}
    for field, _, features in _fields(payload):
        if field != 1:
            continue
        for f, _, entry in _fields(features):
            if f != 1:
                continue
            key = value = None
            for ef, _, ev in _fields(entry):
                if ef == 1:
                    key = ev.decode()
                elif ef == 2:
                    value = _feature(ev)
            if key is not None:
                out[key] = value if value is not None else []
    return out


def read_examples(path: str | Path) -> list[dict[str, np.ndarray | list[bytes]]]:
    data = Path(path).read_bytes()
    pos, out = 0, []
    while pos < len(data):
        if pos + 12 > len(data):
            raise TFRecordError(f"{path}: truncated record header at byte {pos}")
        (length,) = struct.unpack_from("<Q", data, pos)
        start = pos + 12
        if start + length + 4 > len(data):
            raise TFRecordError(f"{path}: truncated record at byte {pos}")
        out.append(parse_example(data[start : start + length]))
        pos = start + length + 4
    return out
