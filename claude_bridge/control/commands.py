"""Commands from Matrix, declared with argparse (as heisenbridge does) so usage and help come free.

``!claude <command> …`` in a thread room; in a management room (a direct chat with the bridge
bot) the prefix is optional. Each command declares the level it needs and where it works; help
lists only what the caller may use there. Anything that goes wrong becomes a reply — an unknown
command, a missing argument, a level too low — never silence.
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NoReturn

from claude_bridge.config import PermissionLevel
from claude_bridge.control.roles import allows
from claude_bridge.store import Thread

THREAD, MANAGEMENT = "thread", "management"


@dataclass(frozen=True)
class Caller:
    user_id: str
    level: PermissionLevel | None
    room_id: str
    event_id: str
    thread: Thread | None
    """The thread whose room the command was sent in; None in a management room."""


@dataclass(frozen=True)
class Reply:
    text: str
    """Markdown."""
    after: Callable[[], Awaitable[None]] | None = None
    """Runs once the reply is in the room (e.g. the ghost leaving after ``archive``)."""


Handler = Callable[[Caller, argparse.Namespace], Awaitable[Reply]]


class CommandError(Exception):
    """Shown to the caller as the reply."""


def _usage(parser: argparse.ArgumentParser) -> str:
    return parser.format_usage().strip().removeprefix("usage: ").replace(" [-h]", "")


class _Parser(argparse.ArgumentParser):
    """argparse that reports instead of printing and exiting."""

    def error(self, message: str) -> NoReturn:
        raise CommandError(f"{message}\n\nUsage: `{_usage(self)}`")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        raise CommandError(message or "")

    def print_help(self, file: Any = None) -> None:
        raise CommandError(f"```\n{self.format_help().strip()}\n```")


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    level: PermissionLevel
    rooms: frozenset[str]
    parser: argparse.ArgumentParser
    run: Handler

    @property
    def usage(self) -> str:
        return _usage(self.parser)


@dataclass
class CommandSet:
    prefix: str
    commands: dict[str, Command] = field(default_factory=dict)

    def add(
        self,
        name: str,
        help: str,
        run: Handler,
        *,
        level: PermissionLevel,
        rooms: Iterable[str] = (THREAD, MANAGEMENT),
        arguments: Iterable[tuple[tuple[str, ...], dict[str, Any]]] = (),
    ) -> None:
        parser = _Parser(prog=name, description=help, add_help=True)
        for flags, options in arguments:
            parser.add_argument(*flags, **options)
        self.commands[name] = Command(name, help, level, frozenset(rooms), parser, run)

    def split(self, body: str, *, management: bool) -> list[str] | None:
        """The words of a command message, or None when ``body`` is not a command."""
        text = body.strip()
        head, _, rest = text.partition(" ")
        if head.lower() == self.prefix.lower():
            text = rest.strip()
        elif not management:
            return None
        try:
            return shlex.split(text) or ["help"]
        except ValueError as e:
            raise CommandError(f"Could not read the command: {e}") from None

    def available(self, caller: Caller) -> list[Command]:
        room = THREAD if caller.thread else MANAGEMENT
        return [
            c for c in self.commands.values() if room in c.rooms and allows(caller.level, c.level)
        ]

    async def run(self, caller: Caller, words: list[str]) -> Reply:
        name, argv = words[0].lower(), words[1:]
        command = self.commands.get(name)
        room = THREAD if caller.thread else MANAGEMENT
        try:
            if command is None:
                known = ", ".join(c.name for c in self.available(caller))
                raise CommandError(f"Unknown command `{name}`. You can use: {known}.")
            if room not in command.rooms:
                where = "a thread room" if THREAD in command.rooms else "a chat with the bridge bot"
                raise CommandError(f"`{name}` works in {where}.")
            if not allows(caller.level, command.level):
                have = caller.level.value if caller.level else "no level"
                raise CommandError(f"`{name}` needs {command.level.value}; you are {have}.")
            return await command.run(caller, command.parser.parse_args(argv))
        except CommandError as e:
            return Reply(f"⚠️ {e}".strip())

    def help(self, caller: Caller, name: str | None = None) -> str:
        prefix = f"{self.prefix} " if caller.thread else ""
        if name:
            command = self.commands.get(name.lower())
            if command is None or command not in self.available(caller):
                raise CommandError(f"No command `{name}` you can use here.")
            return f"`{prefix}{command.usage}`\n\n{command.help}"
        lines = [f"- `{prefix}{c.usage}` — {c.help}" for c in self.available(caller)]
        return "Commands:\n\n" + "\n".join(lines)
