"""Downloading a file from the homeserver's media repository, capped in size.

Through the authenticated media API (``/_matrix/client/v1/media/download``, Matrix 1.11), as the
bridge bot; a homeserver that does not know it (404 ``M_UNRECOGNIZED``, 400, 405) is asked at
the legacy ``/_matrix/media/v3/download``. The body is read in chunks and given up as soon as it
passes the cap, whatever ``Content-Length`` or the event's ``info.size`` claimed.
"""

from __future__ import annotations

import asyncio
import re

import aiohttp

from claude_bridge.matrix.client import MatrixClient, MatrixError, quote

MXC = re.compile(r"^mxc://([A-Za-z0-9.:\[\]-]+)/([A-Za-z0-9_-]+)$")
AUTHENTICATED = "/_matrix/client/v1/media/download/{server}/{media}"
LEGACY = "/_matrix/media/v3/download/{server}/{media}"
CHUNK = 64 * 1024


class TooLarge(Exception):
    """The file is larger than the cap."""


class BadMediaURL(ValueError):
    """Not an ``mxc://server/id`` URL."""


def split_mxc(url: str) -> tuple[str, str]:
    match = MXC.fullmatch(url)
    if match is None:
        raise BadMediaURL(f"not a media URL: {url[:80]!r}")
    return match.group(1), match.group(2)


async def download(client: MatrixClient, url: str, max_bytes: int) -> tuple[bytes, str]:
    """The file's bytes and its Content-Type. Raises ``TooLarge``, ``BadMediaURL`` or
    ``MatrixError`` (``temporary`` when worth trying again)."""
    server, media = split_mxc(url)
    path = AUTHENTICATED.format(server=quote(server), media=quote(media))
    try:
        return await _get(client, path, max_bytes)
    except MatrixError as e:
        if not (e.status in (400, 405) or (e.status == 404 and e.errcode == "M_UNRECOGNIZED")):
            raise
    return await _get(client, LEGACY.format(server=quote(server), media=quote(media)), max_bytes)


async def _get(client: MatrixClient, path: str, max_bytes: int) -> tuple[bytes, str]:
    headers = {"Authorization": f"Bearer {client.as_token}"}
    params = {"user_id": client.bot_mxid, "allow_redirect": "true"}
    try:
        async with asyncio.timeout(client.timeout * 4):
            async with client.session.get(
                client.base_url + path, params=params, headers=headers
            ) as resp:
                if resp.status != 200:
                    body = await resp.content.read(4096)
                    raise _error(path, resp.status, body)
                if resp.content_length is not None and resp.content_length > max_bytes:
                    raise TooLarge(f"{resp.content_length} bytes")
                data = bytearray()
                async for chunk in resp.content.iter_chunked(CHUNK):
                    data += chunk
                    if len(data) > max_bytes:
                        raise TooLarge(f"more than {max_bytes} bytes")
                return bytes(data), resp.headers.get("Content-Type", "")
    except TimeoutError:
        raise MatrixError(f"GET {path}: no answer in time") from None
    except (aiohttp.ClientError, OSError) as e:
        raise MatrixError(f"GET {path}: {e!r}") from None


def _error(path: str, status: int, body: bytes) -> MatrixError:
    import json

    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = {}
    parsed = parsed if isinstance(parsed, dict) else {}
    errcode = str(parsed.get("errcode", ""))
    return MatrixError(
        f"GET {path}: {status} {errcode} {parsed.get('error', '')}".strip(),
        status=status,
        errcode=errcode,
    )
