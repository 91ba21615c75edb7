"""Real PNG files made in a few lines, for tests (no imaging library needed)."""

from __future__ import annotations

import base64
import os
import struct
import zlib


def png(width: int, height: int, *, noise: bool = False) -> bytes:
    """An RGB PNG of ``width`` × ``height``: one colour, or random pixels (which do not
    compress, so the file is about ``3 × width × height`` bytes)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    row = (lambda: os.urandom(3 * width)) if noise else (lambda: b"\xc8\x1e\x1e" * width)
    raw = b"".join(b"\x00" + row() for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
