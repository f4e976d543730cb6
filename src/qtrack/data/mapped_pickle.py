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

import io
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

    stream = io.BytesIO()
    _ViewPickler(stream, protocol=5, buffer_callback=out_of_band).dump(obj)
    stream = stream.getbuffer()
    parts = [memoryview(stream), *(buffer.raw() for buffer in buffers)]
    header, offsets = _layout([part.nbytes for part in parts])
    out.write(MAGIC + struct.pack("<Q", len(header)) + header)
    position = 16 + len(header)
    for offset, part in zip(offsets, parts, strict=True):
        out.write(b"\0" * (offset - position))
        out.write(part)
        position = offset + part.nbytes


class _ViewPickler(pickle.Pickler):
    """Pickles a strided view of a contiguous array (a frame's rows up to a day: the handler's frame is one)
    as its base and the view's geometry. numpy would copy the view's bytes into the stream: a second whole
    dataset in memory while the entry is written. The base goes out of band, and loading rebuilds the view."""

    def reducer_override(self, obj: Any) -> Any:
        import numpy as np

        if type(obj) is not np.ndarray or obj.flags.c_contiguous or obj.flags.f_contiguous or obj.dtype.hasobject:
            return NotImplemented
        base = obj
        while isinstance(base.base, np.ndarray):
            base = base.base
        contiguous = base.flags.c_contiguous or base.flags.f_contiguous
        if base is obj or not contiguous or base.dtype != obj.dtype:
            return NotImplemented
        offset = obj.__array_interface__["data"][0] - base.__array_interface__["data"][0]
        return _view, (base.ravel(order="K"), obj.shape, obj.strides, offset)  # in memory order: no copy


def _view(memory: Any, shape: tuple, strides: tuple, offset: int) -> Any:
    import numpy as np

    return np.ndarray(shape, dtype=memory.dtype, buffer=memory, offset=offset, strides=strides)


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
