"""Start-up: threads follow a renamed hook token, and threads no configured token owns are named.

Ownership is keyed to the token's *name* (the secret may rotate freely). Renaming a token in
``hooks.tokens`` would leave its threads, and the messages queued for them, with an owner no one
can speak as; listing the old name under the new token's ``renamed_from`` moves them at the next
start (one UPDATE per old name, logged). Whatever is still unowned afterwards is logged here and
reported by ``doctor``: those sessions are refused on every path until their owner is configured.
"""

from __future__ import annotations

from dataclasses import dataclass

from claude_bridge.ids import ThreadID
from claude_bridge.log import get_logger
from claude_bridge.store import ThreadStore
from claude_bridge.token_access import TokenAccess

log = get_logger("ownership")

SHOWN_IDS = 5
"""Thread ids named per orphaned owner in a log line or doctor message (then a count)."""


@dataclass(frozen=True)
class Orphans:
    owner: str | None
    threads: list[ThreadID]

    def describe(self) -> str:
        shown = ", ".join(self.threads[:SHOWN_IDS])
        more = f" and {len(self.threads) - SHOWN_IDS} more" if len(self.threads) > SHOWN_IDS else ""
        return f"{len(self.threads)} thread(s) of token {self.owner!r} ({shown}{more})"


def orphans(owners: dict[str | None, list[ThreadID]], access: TokenAccess) -> list[Orphans]:
    """Owners (with their threads) that are neither a configured token nor a renamed one."""
    return [
        Orphans(owner, threads)
        for owner, threads in owners.items()
        if owner is None or (owner not in access.tokens and owner not in access.renames)
    ]


async def settle_owners(threads: ThreadStore, access: TokenAccess) -> list[Orphans]:
    """Move the threads of renamed tokens to their new names; return what stays orphaned."""
    owners = await threads.owners()
    for old, new in access.renames.items():
        if old in owners:
            moved = await threads.give_to(old, new)
            log.warning(
                "hook token renamed: its threads (and their queued messages) now belong to the "
                "new name; 'renamed_from' can be removed from the config",
                renamed_from=old,
                token=new,
                threads=len(moved),
            )
            owners.setdefault(new, []).extend(owners.pop(old))
    left = orphans(owners, access)
    for orphan in left:
        log.warning(
            "threads whose hook token is not configured: their sessions are refused until "
            "the token is back, or its new name lists it under renamed_from",
            owner=orphan.owner,
            threads=orphan.describe(),
        )
    return left
