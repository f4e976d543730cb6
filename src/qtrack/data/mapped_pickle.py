"""Pickles whose large arrays are read through a memory map instead of being copied in.

A feature-cache entry is mostly a few float32 blocks (2 GB at 500 symbols x 14 years). Pickle protocol
5 hands those arrays' buffers out of band; they are written after the pickle stream, each aligned, and
on load they are mapped copy-on-write, so opening an entry costs milliseconds and a run reads only the
pages it touches (a warm LightGBM run with its binned sets cached never touches the training rows).
Writes to a loaded array stay private to the process; the file is never modified.

Layout: MAGIC, an 8-byte header length, a JSON header with the (offset, length) of the pickle stream
and of every buffer and the total size, then the stream and the buffers.
"""

from __future__ import annotations

import json
import mmap
import pickle
import struct
from pathlib import Path
from typing import Any, BinaryIO

MAGIC = b"QTRKMPK1"
ALIGN = 64
IN_BAND_BELOW = 1 << 16  # small buffers stay inside the pickle stream


class UnreadableEntry(ValueError):
    pass


def dump(obj: Any, out: BinaryIO) -> None:
    buffers: list[pickle.PickleBuffer] = []

    def out_of_band(buffer: pickle.PickleBuffer) -> bool:
        if buffer.raw().nbytes < IN_BAND_BELOW:
            return True
        buffers.append(buffer)
        return False

    stream = pickle.dumps(obj, protocol=5, buffer_callback=out_of_band)
    parts = [memoryview(stream), *(buffer.raw() for buffer in buffers)]
    header, offsets = _layout([part.nbytes for part in parts])
    out.write(MAGIC + struct.pack("<Q", len(header)) + header)
    position = 16 + len(header)
    for offset, part in zip(offsets, parts, strict=True):
        out.write(b"\0" * (offset - position))
        out.write(part)
        position = offset + part.nbytes


def load(path: Path) -> Any:
    with path.open("rb") as handle:
        try:
            mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_COPY)
        except ValueError as exc:  # an empty file
            raise UnreadableEntry(str(exc)) from None
    view = memoryview(mapped)
    if len(view) < 16 or view[:8] != MAGIC:
        raise UnreadableEntry("not a mapped pickle")
    (length,) = struct.unpack("<Q", view[8:16])
    try:
        header = json.loads(bytes(view[16 : 16 + length]))
    except ValueError:
        raise UnreadableEntry("damaged header") from None
    if header.get("size") != len(view):
        raise UnreadableEntry(f"{len(view)} bytes where the header says {header.get('size')}")
    stream, *buffers = (view[offset : offset + size] for offset, size in header["parts"])
    return pickle.loads(stream, buffers=buffers)


def _layout(sizes: list[int]) -> tuple[bytes, list[int]]:
    """The header and the parts' offsets; the parts start after the header, which holds their offsets."""
    room = 16
    while True:
        offsets, offset = [], _aligned(room)
        for size in sizes:
            offsets.append(offset)
            offset = _aligned(offset + size)
        end = offsets[-1] + sizes[-1]
        header = json.dumps({"parts": list(zip(offsets, sizes, strict=True)), "size": end}).encode()
        if 16 + len(header) <= room:
            return header, offsets
        room = 16 + len(header)


def _aligned(offset: int) -> int:
    return -(-offset // ALIGN) * ALIGN
