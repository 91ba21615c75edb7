"""Ghost avatars: a valid PNG per seed, the same each time, different between sessions."""

from __future__ import annotations

import hashlib
import struct
import zlib

from claude_bridge.identicon import BACKGROUND, GRID, SIZE, colour, identicon_png, pattern


def decode(png: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and pixel rows of an 8-bit RGB PNG, checking every chunk's CRC."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind, data = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", png[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + data) & 0xFFFFFFFF, kind
        chunks[kind] = data
        pos += 12 + length
    assert list(chunks) == [b"IHDR", b"IDAT", b"IEND"]
    width, height, depth, colour_type = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (depth, colour_type) == (8, 2)
    raw = zlib.decompress(chunks[b"IDAT"])
    stride = 1 + 3 * width
    assert len(raw) == stride * height
    rows = [raw[i * stride : (i + 1) * stride] for i in range(height)]
    assert all(row[0] == 0 for row in rows)
    return width, height, [row[1:] for row in rows]


def test_a_valid_png_with_the_colour_and_a_mirrored_pattern() -> None:
    seed = "@claude-3eb5f21d-5dcb-43a8-9ab8-939331f73b6b:localhost"
    width, height, rows = decode(identicon_png(seed))
    assert (width, height) == (SIZE, SIZE)
    pixels = {bytes(rows[y][x * 3 : x * 3 + 3]) for y in range(SIZE) for x in range(SIZE)}
    assert pixels == {bytes(BACKGROUND), bytes(colour(seed))}
    for row in rows:
        cells = [row[x * 3 : x * 3 + 3] for x in range(SIZE)]
        assert cells == cells[::-1]  # symmetric left to right
    assert any(any(r) for r in pattern(seed))


def test_deterministic_and_distinct() -> None:
    a, b = "@claude-aaaa:localhost", "@claude-bbbb:localhost"
    assert identicon_png(a) == identicon_png(a)
    assert identicon_png(a) != identicon_png(b)
    seeds = [f"@claude-{i:04x}:localhost" for i in range(50)]
    assert len({colour(s) for s in seeds}) == 50
    assert len({tuple(map(tuple, pattern(s))) for s in seeds}) > 40
    assert all(len(pattern(s)) == GRID for s in seeds)


def test_the_same_pixels_as_every_earlier_bridge() -> None:
    """A ghost keeps its avatar across versions: these pixels were made by the first,
    pixel-by-pixel version (the PNG's compressed bytes may differ with the zlib build)."""
    _, _, rows = decode(identicon_png("@claude-ab12cd34:localhost"))
    digest = hashlib.sha256(b"".join(rows)).hexdigest()
    assert digest == "8dd6fb23da813cbb8509e80c8fb55eb99227e7f8996b48c2746dd2905f13c20f"
