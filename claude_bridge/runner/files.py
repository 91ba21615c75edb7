"""Operators' files for ``type`` jobs: fetched with the runner's token and written on this host
before the job's text (which names their paths) is typed.

The runner announces where it writes them with every poll (``X-Claude-Bridge-Files: <root>``,
``host_files.FILES_HEADER``); only then does the bridge hand it jobs that carry files. The
fetching and writing is ``host_files.receive``, the same as the durable shim's and the
waiter's: an entry whose path is not ``<root>/<session>/<id>-<name>`` is refused, files are 0600
in 0700 folders. A file that could not be fetched or written is named in the typed text itself
(``[claude-bridge: …]``), as the shim does in a hook answer, so Claude is never left looking
for a path that is not there without being told.

Session folders untouched for ``$CLAUDE_BRIDGE_FILES_KEEP_DAYS`` (7) days are deleted when the
runner starts and hourly after (``prune_forever``).
"""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from typing import Any

from claude_bridge import host_files, shim
from claude_bridge.log import get_logger
from claude_bridge.runner.sessions import Live

log = get_logger(__name__)

FETCH_TIMEOUT = 60.0
PRUNE_EVERY = 3600.0


async def prune_forever(root: str, keep_seconds: float, every: float = PRUNE_EVERY) -> None:
    """At start, then every ``every`` seconds: delete the session folders under ``root``
    untouched for ``keep_seconds`` (``host_files.prune``; ``$CLAUDE_BRIDGE_FILES_KEEP_DAYS``)."""
    while True:
        try:
            gone = await asyncio.to_thread(host_files.prune, root, keep_seconds)
        except OSError as e:
            log.warning("runner.files_prune_failed", error=str(e))
        else:
            if gone:
                log.info("runner.files_pruned", root=root, folders=gone)
        await asyncio.sleep(every)


def files_header(root: str | None) -> dict[str, str]:
    """The poll's header announcing ``root`` (none: this runner carries no files)."""
    return shim.files_header(root) if root else {}


class FileReceiver:
    """A ``before_type`` step (``Executor.before_type``)."""

    def __init__(self, url: str, token: str, root: str, timeout: float = FETCH_TIMEOUT) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.root = root
        self.timeout = timeout

    def fetch(self, path: str) -> bytes:
        request = urllib.request.Request(
            self.url + path, headers={"Authorization": f"Bearer {self.token}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return bytes(response.read())
        except urllib.error.HTTPError as e:
            raise OSError(f"the bridge answered {e.code}") from None

    async def __call__(self, job: dict[str, Any], live: Live) -> str | None:
        entries = job.get("files")
        if not entries:
            return None
        text = str(job.get("text") or "")
        if not isinstance(entries, list):
            problems = ["the job named files in a form this runner does not know"]
        else:
            problems = await asyncio.to_thread(
                host_files.receive, self.fetch, self.root, job["session_id"], entries
            )
        for problem in problems:
            log.warning("runner.file_failed", job=job.get("id"), problem=problem)
        if not problems:
            return None
        return text + "\n\n" + "\n".join(f"[claude-bridge: {p}]" for p in problems)
