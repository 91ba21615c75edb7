"""Fatal start-up errors: a message that says what to do, and a distinct exit code."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    CONFIG = 10
    AS_TOKEN_REJECTED = 11
    NAMESPACE_CLASH = 12
    APPSERVICE_UNREACHABLE = 13
    DATABASE = 14


class FatalError(Exception):
    def __init__(self, message: str, exit_code: ExitCode) -> None:
        super().__init__(message)
        self.exit_code = exit_code
