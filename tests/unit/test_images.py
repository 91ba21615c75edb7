"""Images a tool call returned: finding them in the captured payloads, their size from the
header, the ``m.image`` they render to, and the bytes passing the scrubber untouched."""

from __future__ import annotations

import base64
import json
import struct
from pathlib import Path
from typing import Any

import pytest

from claude_bridge.config.sections.mirror import RedactConfig
from claude_bridge.events.parse import parse_hook_event
from claude_bridge.matrix.outgoing import scrub_body, scrub_upload
from claude_bridge.render.events import render_event
from claude_bridge.render.images import (
    encoded_images,
    image_size,
    pictures,
    restore_images,
    too_large_text,
)
from claude_bridge.render.messages import OutboundMessage, RenderContext
from claude_bridge.render.scrub import scrubber_for
from tests.images import b64, png

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "hook-payloads"
READS = ["png", "jpg", "gif", "webp", "png.resized"]
GOOGLE_KEY = "AIza" + "B" * 35  # shaped like a key the scrubber knows


def payload(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"PostToolUse.{name}.json").read_text())
    return data


def render(data: dict[str, Any], **mirror: Any) -> list[OutboundMessage]:
    ctx = RenderContext(thread_id="t", project="demo-app", mirror=mirror or None)
    return render_event(parse_hook_event(data), ctx)


@pytest.mark.parametrize("kind", READS)
def test_the_header_gives_the_size_the_cli_reported(kind: str) -> None:
    file = payload(f"Read.{kind}")["tool_response"]["file"]
    data = base64.b64decode(file["base64"])
    dims = file["dimensions"]
    # The bytes are the image as Claude saw it: a large one resized (3000×2000 → 2000×1333).
    assert image_size(data) == (file["type"], dims["displayWidth"], dims["displayHeight"])


def test_webp_lossless_and_extended_headers() -> None:
    bits = (100 - 1) | ((50 - 1) << 14)
    vp8l = b"RIFF\0\0\0\0WEBPVP8L\0\0\0\0\x2f" + bits.to_bytes(4, "little")
    assert image_size(vp8l) == ("image/webp", 100, 50)
    vp8x = b"RIFF\0\0\0\0WEBPVP8X\0\0\0\0\0\0\0\0" + (639).to_bytes(3, "little")
    assert image_size(vp8x + (479).to_bytes(3, "little")) == ("image/webp", 640, 480)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not an image",
        b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0",  # cut short
        b"\xff\xd8\xff\xe0\0\x10JFIF",  # JPEG without a frame
        b"\xff\xd8\xff\xe0\0\x01",  # a segment length below 2
        b"GIF89a\x01",
        b"<svg xmlns='http://www.w3.org/2000/svg'/>",
    ],
)
def test_no_size_from_what_is_not_a_known_image(data: bytes) -> None:
    assert image_size(data) is None


def test_a_jpeg_frame_after_other_segments() -> None:
    app = b"\xff\xe1" + struct.pack(">H", 6) + b"Exif"
    sof = b"\xff\xc2" + struct.pack(">HBHH", 11, 8, 480, 640) + b"\x03"
    assert image_size(b"\xff\xd8" + app + b"\xff\xff" + sof) == ("image/jpeg", 640, 480)


@pytest.mark.parametrize("kind", READS)
def test_a_read_of_an_image_is_an_m_image_in_the_calls_thread(kind: str) -> None:
    data = payload(f"Read.{kind}")
    (msg,) = render(data)
    file = data["tool_response"]["file"]
    assert msg.thread_root == f"tool:{data['tool_use_id']}"
    assert msg.attachment is not None
    assert msg.attachment.data == base64.b64decode(file["base64"])
    assert msg.attachment.mimetype == file["type"]
    content = msg.content
    assert content["msgtype"] == "m.image"
    assert content["body"] == content["filename"] == Path(data["tool_input"]["file_path"]).name
    info = content["info"]
    assert info["mimetype"] == file["type"]
    assert info["size"] == len(msg.attachment.data)
    assert (info["w"], info["h"]) == (
        file["dimensions"]["displayWidth"],
        file["dimensions"]["displayHeight"],
    )
    small = max(info["w"], info["h"]) <= 800
    # A small image is its own thumbnail; a large one is scaled by the media repository.
    assert msg.attachment.thumbnail is small
    assert ("thumbnail_info" in info) is small
    assert "url" not in content  # delivery fills it in after the upload


def test_an_mcp_tools_image_comes_after_its_text() -> None:
    data = payload("mcp.image")
    text, image = render(data)
    assert "the page" in text.content["body"]
    assert "iVBOR" not in text.content["body"]  # the base64 is no text to show
    assert image.content["msgtype"] == "m.image"
    assert image.content["body"] == "screenshot.png"
    block = data["tool_response"][0]["source"]
    assert image.attachment is not None
    assert image.attachment.data == base64.b64decode(block["data"])
    assert text.thread_root == image.thread_root == f"tool:{data['tool_use_id']}"


def test_a_bash_data_uri_image_is_an_image_not_text() -> None:
    data = payload("Bash.image")
    text, image = render(data)
    assert text.content["body"].endswith("🖼️ image output") and "base64,iVBOR" not in str(text)
    assert image.content["body"] == "bash.png" and image.attachment is not None
    uri = data["tool_response"]["stdout"]
    assert image.attachment.data == base64.b64decode(uri.split(",", 1)[1])
    assert image.thread_root == text.thread_root == f"tool:{data['tool_use_id']}"
    # Without isImage, or with more than the URI, it is output like any other.
    for changed in ({"isImage": False}, {"stdout": f"{uri}\nmore"}):
        data["tool_response"] = {**payload("Bash.image")["tool_response"], **changed}
        (only,) = render(data)
        assert only.content["msgtype"] == "m.notice"


def test_a_notebooks_plots_are_images_after_its_cells_as_text() -> None:
    data = payload("Read.ipynb")
    text, image = render(data)
    assert text.content["body"] == "# [1] code\nplot()\n<Figure>\n🖼️ image/png"
    assert "iVBOR" not in json.dumps(text.content)
    assert image.content["body"] == "nb.png" and image.attachment is not None
    output = data["tool_response"]["file"]["cells"][0]["outputs"][0]["image"]
    assert image.attachment.data == base64.b64decode(output["image_data"])
    cells = data["tool_response"]["file"]["cells"]
    data["tool_response"]["file"]["cells"] = [cells[0], cells[0]]
    names = [m.content["body"] for m in render(data)[1:]]
    assert names == ["nb.png", "nb-2.png"]


def test_inline_output_puts_the_image_in_the_timeline_and_off_shows_none() -> None:
    (msg,) = render(payload("Read.png"), tool_output="inline")
    assert msg.thread_root is None and msg.content["msgtype"] == "m.image"
    assert render(payload("Read.png"), tool_output="off") == []


def test_image_bytes_pass_the_scrubber_untouched() -> None:
    # A PNG whose base64 holds a run the scrubber would cut out of text.
    image = png(7, 5)
    image += b"\0" * (-len(image) % 3) + base64.b64decode(GOOGLE_KEY + "A")
    assert GOOGLE_KEY in b64(image)
    data = payload("Read.png")
    data["tool_response"]["file"]["base64"] = b64(image)
    data["tool_input"]["file_path"] = f"/home/dev/{GOOGLE_KEY}.png"
    (msg,) = render(data)
    assert msg.attachment is not None and msg.attachment.data == image
    # The file name is text, and scrubbed.
    assert GOOGLE_KEY not in msg.content["body"] and GOOGLE_KEY not in msg.attachment.filename
    scrub = scrubber_for(RedactConfig())
    assert scrub_upload(scrub, image, "image/png") == image
    assert scrub_upload(scrub, GOOGLE_KEY.encode(), "text/plain") != GOOGLE_KEY.encode()


def test_restore_puts_back_only_the_image_data() -> None:
    raw = payload("mcp.image")["tool_response"]
    raw[2]["text"] = f"key {GOOGLE_KEY}"
    scrub = scrubber_for(RedactConfig())
    scrubbed = scrub.value(raw)
    scrubbed[0]["source"]["data"] = "cut"
    restored = restore_images(raw, scrubbed)
    assert restored[0]["source"]["data"] == raw[0]["source"]["data"]
    assert GOOGLE_KEY not in restored[2]["text"]


@pytest.mark.parametrize(
    "response",
    [
        {"type": "image", "file": {"base64": "not base64!", "type": "image/png"}},
        {"type": "image", "file": {"base64": b64(b"plain text"), "type": "image/png"}},
        {"type": "image", "file": {"base64": b64(png(2, 2)), "type": "image/jpeg"}},  # lies
        {"type": "image", "file": {"base64": b64(b"<svg/>"), "type": "image/svg+xml"}},
        [{"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}],
        [{"type": "image"}],
        "🖼️ a string",
    ],
)
def test_nothing_is_shown_of_what_is_no_image_it_claims(response: Any) -> None:
    assert pictures("Read", {"file_path": "/p/a.png"}, response) == []


def test_mcps_own_shape_and_numbered_names() -> None:
    image = b64(png(3, 2))
    response = [
        {"type": "image", "data": image, "mimeType": "image/png"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": image}},
    ]
    assert [p for p, _ in encoded_images(response)] == [[0, "data"], [1, "source", "data"]]
    names = [p.filename for p in pictures("mcp__browser__take_screenshot", {}, response)]
    assert names == ["take_screenshot.png", "take_screenshot-2.png"]


@pytest.mark.parametrize(
    ("path", "name"),
    [("/p/plot.png", "plot.png"), ("/p/shot.PNG", "shot.PNG"), ("/p/big.png", "big.jpg"),
     ("/p/photo.jpeg", "photo.jpeg"), ("/p/noext", "noext.jpg")],
)  # fmt: skip
def test_the_name_follows_what_the_cli_sent(path: str, name: str) -> None:
    """A large PNG comes as a JPEG (a noisy 1600×1000 PNG of 4.8 MB came as a 480 KB JPEG):
    the name says what the bytes are."""
    data = (
        b64(png(2, 2))
        if name.endswith(("png", "PNG"))
        else payload("Read.jpg")["tool_response"]["file"]["base64"]
    )
    kind = "image/png" if name.endswith(("png", "PNG")) else "image/jpeg"
    response = {"type": "image", "file": {"base64": data, "type": kind}}
    (picture,) = pictures("Read", {"file_path": path}, response)
    assert picture.filename == name


def test_the_line_for_an_image_over_the_limit() -> None:
    content = {
        "msgtype": "m.image",
        "body": "plot.png",
        "filename": "plot.png",
        "info": {"mimetype": "image/png", "size": 3 * 1024 * 1024, "w": 2000, "h": 1333},
    }
    assert too_large_text(content) == (
        "🖼️ plot.png (image/png, 2000×1333, 3.0 MB): not shown, larger than the homeserver accepts"
    )
    assert too_large_text({"body": "out.txt"}).startswith("📎 out.txt: not shown")


def test_thumbnail_url_is_an_identifier_the_scrubber_keeps() -> None:
    scrub = scrubber_for(RedactConfig(patterns=["mxc://[a-z/]+"]))
    url = "mxc://localhost/abc"
    content = {"msgtype": "m.image", "url": url, "info": {"thumbnail_url": url, "mimetype": "x"}}
    out = scrub_body(scrub, content)
    assert out["url"] == url and out["info"]["thumbnail_url"] == url
