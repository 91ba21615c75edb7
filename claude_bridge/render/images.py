"""Images a tool call carried in its PostToolUse payload: where they are, what they are.

Claude Code 2.1.332 sends the image itself (base64) in two shapes, recorded from the real CLI in
``tests/fixtures/hook-payloads/``:

- a Read of a ``.png``, ``.jpg``, ``.gif`` or ``.webp``: ``tool_response.file`` holds ``base64``,
  ``type`` (the MIME type) and ``dimensions`` (a large image comes resized: the bytes are the
  resized image, ``displayWidth`` × ``displayHeight``);
- an MCP tool's image content: ``tool_response`` is a list of Anthropic content blocks, an image
  being ``{"type": "image", "source": {"type": "base64", "media_type": …, "data": …}}``;
- a Bash command that printed an image as a data URI: ``isImage: true`` and ``stdout`` the URI;
- a Read of a notebook: ``file.cells[i].outputs[j].image`` with ``image_data`` and
  ``media_type``.

The bridge never reads an image from a path (docs/mirroring.md, Images). Width and height
are read from the image's own header (PNG, JPEG, GIF, WebP), which is what a client will show;
nothing here decodes pixels, so the bridge needs no imaging library.
"""

from __future__ import annotations

import base64
import binascii
import posixpath
import re
import struct
from dataclasses import dataclass
from typing import Any

SHOWN_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
"""What is posted as ``m.image``; other types (an SVG could carry script) stay a text note."""
SELF_THUMBNAIL_MAX = 800
"""An image no wider or taller than this is its own thumbnail (``thumbnail_url`` = ``url``);
for a larger one, clients ask the media repository, which scales it (Synapse's thumbnailer)."""
MAX_PICTURES = 8
"""Images posted for one tool call, at most. A hook body of 1 MiB can hold ten thousand tiny
images (an MCP tool's answer), each an upload and a message that pings the room; the rest are
counted in one line (``left_out``)."""
_DATA_URI = re.compile(r"\s*data:(image/[\w.+-]+);base64,[A-Za-z0-9+/=]+\s*")
_EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/gif": "gif", "image/webp": "webp"}


@dataclass(frozen=True)
class Picture:
    """One image a tool response carried, decoded."""

    data: bytes
    mimetype: str
    width: int | None
    height: int | None
    filename: str


def encoded_images(response: Any) -> list[tuple[list[Any], str]]:
    """Where a tool response holds base64 image data: (path of keys to the string, declared
    MIME type), in order. Pure lookup, for decoding and for keeping the data out of the text
    scrubber (``render/events.py``)."""
    found: list[tuple[list[Any], str]] = []
    if isinstance(response, dict):
        stdout = response.get("stdout")
        if response.get("isImage") is True and isinstance(stdout, str):
            if uri := _DATA_URI.fullmatch(stdout):  # Bash printed an image as a data URI
                found.append((["stdout"], uri.group(1)))
        file = response.get("file")
        if isinstance(file, dict) and isinstance(file.get("base64"), str):
            declared = file.get("type")
            found.append((["file", "base64"], declared if isinstance(declared, str) else ""))
        elif isinstance(file, dict) and isinstance(file.get("cells"), list):
            found += _notebook_images(file["cells"])
    elif isinstance(response, list):
        for index, block in enumerate(response):
            if not isinstance(block, dict) or block.get("type") != "image":
                continue
            source = block.get("source")
            if isinstance(source, dict) and isinstance(source.get("data"), str):
                declared = source.get("media_type")
                kind = declared if isinstance(declared, str) else ""
                found.append(([index, "source", "data"], kind))
            elif isinstance(block.get("data"), str):  # MCP's own shape, should a version pass it
                declared = block.get("mimeType")
                found.append(([index, "data"], declared if isinstance(declared, str) else ""))
    return found


def _notebook_images(cells: list[Any]) -> list[tuple[list[Any], str]]:
    """A notebook's image outputs (a Read of an ``.ipynb``): ``cells[i].outputs[j].image``."""
    found: list[tuple[list[Any], str]] = []
    for i, cell in enumerate(cells):
        outputs = cell.get("outputs") if isinstance(cell, dict) else None
        for j, output in enumerate(outputs if isinstance(outputs, list) else []):
            image = output.get("image") if isinstance(output, dict) else None
            if isinstance(image, dict) and isinstance(image.get("image_data"), str):
                declared = image.get("media_type")
                path = ["file", "cells", i, "outputs", j, "image", "image_data"]
                found.append((path, declared if isinstance(declared, str) else ""))
    return found


def _at(value: Any, path: list[Any]) -> Any:
    for key in path:
        value = value[key]
    return value


def restore_images(raw: Any, scrubbed: Any) -> Any:
    """``scrubbed`` (a scrubbed copy of the tool response ``raw``) with the image data put back
    as it was: the text scrubber would otherwise cut a pattern-shaped run out of the base64 and
    break the image. The rest stays scrubbed."""
    for path, _ in encoded_images(raw):
        try:
            parent = _at(scrubbed, path[:-1])
            parent[path[-1]] = _at(raw, path)
        except (KeyError, IndexError, TypeError):
            continue  # shapes differ: leave the scrubbed copy as it is
    return scrubbed


def pictures(tool_name: str, tool_input: dict[str, Any], response: Any) -> list[Picture]:
    """The images a response carried that can be shown as they are; undecodable data, an
    unknown format or one whose bytes disagree with no known header are left out."""
    out: list[Picture] = []
    for number, (path, declared) in enumerate(encoded_images(response), start=1):
        if len(out) == MAX_PICTURES:
            break
        encoded = str(_at(response, path))
        if encoded.startswith("data:"):
            encoded = encoded.split(",", 1)[1].strip()
        try:
            data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        sniffed = image_size(data)
        if sniffed is None:
            continue
        mimetype, width, height = sniffed
        if mimetype not in SHOWN_TYPES or (declared and declared.lower() != mimetype):
            continue
        name = _filename(tool_name, tool_input, mimetype, number)
        out.append(Picture(data, mimetype, width, height, name))
    return out


def left_out(response: Any, shown: int) -> int:
    """How many images of the response were not looked at, past ``MAX_PICTURES`` shown."""
    return len(encoded_images(response)) - shown if shown >= MAX_PICTURES else 0


def _filename(tool_name: str, tool_input: dict[str, Any], mimetype: str, number: int) -> str:
    path = tool_input.get("file_path")
    if isinstance(path, str) and posixpath.basename(path):
        # The CLI may send another format than the file's (a large PNG comes as a JPEG).
        stem, ext = posixpath.splitext(posixpath.basename(path))
        same = ext.lower().lstrip(".") in (_EXTENSIONS[mimetype], mimetype.split("/")[1])
        if same:
            return f"{stem}{ext}"
        suffix = f"-{number}" if number > 1 else ""  # a notebook's second plot
        return f"{stem or 'image'}{suffix}.{_EXTENSIONS[mimetype]}"
    stem = tool_name.rsplit("__", 1)[-1].lower()
    stem = "".join(c if c.isalnum() or c in "-_" else "-" for c in stem).strip("-")[:40] or "image"
    suffix = f"-{number}" if number > 1 else ""
    return f"{stem}{suffix}.{_EXTENSIONS[mimetype]}"


def image_size(data: bytes) -> tuple[str, int, int] | None:
    """(MIME type, width, height) from an image's header; None if it is none of PNG, JPEG, GIF
    or WebP, or its header is cut short."""
    try:
        if data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR":
            w, h = struct.unpack(">II", data[16:24])
            return "image/png", w, h
        if data[:6] in (b"GIF87a", b"GIF89a"):
            w, h = struct.unpack("<HH", data[6:10])
            return "image/gif", w, h
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            return _webp(data)
        if data.startswith(b"\xff\xd8"):
            return _jpeg(data)
    except struct.error:
        return None
    return None


def _webp(data: bytes) -> tuple[str, int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
        w, h = struct.unpack("<HH", data[26:30])
        return "image/webp", w & 0x3FFF, h & 0x3FFF
    if chunk == b"VP8L" and data[20:21] == b"\x2f":
        bits = int.from_bytes(data[21:25], "little")
        return "image/webp", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(data) >= 30:
        w = int.from_bytes(data[24:27], "little") + 1
        h = int.from_bytes(data[27:30], "little") + 1
        return "image/webp", w, h
    return None


# Start-of-frame markers carry the size; C4 (DHT), C8 (JPG) and CC (DAC) are not frames.
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg(data: bytes) -> tuple[str, int, int] | None:
    at = 2
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length
            at += 2
            continue
        (length,) = struct.unpack(">H", data[at + 2 : at + 4])
        if marker in _SOF:
            h, w = struct.unpack(">HH", data[at + 5 : at + 9])
            return "image/jpeg", w, h
        if length < 2:
            return None
        at += 2 + length
    return None


def image_content(picture: Picture) -> dict[str, Any]:
    """``m.image`` content; delivery uploads the bytes and fills in ``url`` (and
    ``thumbnail_url``, when the image is its own thumbnail)."""
    info: dict[str, Any] = {"mimetype": picture.mimetype, "size": len(picture.data)}
    if picture.width and picture.height:
        info["w"], info["h"] = picture.width, picture.height
        if max(picture.width, picture.height) <= SELF_THUMBNAIL_MAX:
            info["thumbnail_info"] = dict(info)
    return {
        "msgtype": "m.image",
        "body": picture.filename,
        "filename": picture.filename,
        "info": info,
        "m.mentions": {},
    }


def too_large_text(content: dict[str, Any]) -> str:
    """The line that stands in for an attachment the homeserver refused as too large."""
    found = content.get("info")
    info: dict[str, Any] = found if isinstance(found, dict) else {}
    name = str(content.get("filename") or content.get("body") or "file")
    parts = [str(info["mimetype"])] if isinstance(info.get("mimetype"), str) else []
    if isinstance(info.get("w"), int) and isinstance(info.get("h"), int):
        parts.append(f"{info['w']}×{info['h']}")
    if isinstance(info.get("size"), int):
        parts.append(_size(info["size"]))
    icon = "🖼️" if content.get("msgtype") == "m.image" else "📎"
    detail = f" ({', '.join(parts)})" if parts else ""
    return f"{icon} {name}{detail}: not shown, larger than the homeserver accepts"


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.0f} KB"
    return f"{n / 1024 / 1024:.1f} MB"
