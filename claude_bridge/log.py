"""One logging setup: structlog for our code, stdlib logging (mautrix, aiohttp) routed through it.

JSON lines when not on a terminal (production), readable lines on a terminal.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, MutableMapping
from typing import Any

import structlog
from mautrix.util.logging import TraceLogger

_SECRET_KEYS = frozenset({"token", "as_token", "hs_token", "authorization", "password", "secret"})


def _drop_secrets(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    # Belt and braces: a token bound into a log call by mistake is never written out.
    for key in _SECRET_KEYS & event.keys():
        event[key] = "[redacted]"
    return event


_scrub: Callable[[Any], Any] | None = None
_NOT_SCRUBBED = frozenset({"timestamp", "level", "logger", "logger_name"})


def scrub_logs_with(scrub: Callable[[Any], Any] | None) -> None:
    """Pass every value of every log line through ``scrub`` (the bridge sets its outgoing
    scrubber at start): a hook payload's secret in a logged path or error stays out of the log,
    as it stays out of Matrix."""
    global _scrub
    _scrub = scrub


def _scrub_values(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    scrub = _scrub
    if scrub is not None:
        for key, value in event.items():
            if key not in _NOT_SCRUBBED and isinstance(value, str | dict | list | tuple):
                event[key] = scrub(value)
    return event


def setup_logging(level: str = "INFO", fmt: str = "auto") -> None:
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _drop_secrets,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        # Level first: a debug line on the hook path then costs no timestamp or context merge.
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    # structlog's factory swaps the stdlib logger class; mautrix asserts its own TraceLogger.
    logging.setLoggerClass(TraceLogger)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info if use_json else lambda _l, _m, e: e,
                _scrub_values,  # after the traceback became text
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's access log is one line per hook: far too chatty at INFO.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # aiosqlite logs every statement with its parameters at DEBUG: every hook payload, raw.
    logging.getLogger("aiosqlite").setLevel(logging.INFO)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.stdlib.get_logger(f"claude_bridge.{name}")


def mau_logger(name: str) -> TraceLogger:
    """A stdlib logger of the class mautrix expects (it asserts ``TraceLogger``)."""
    logger = logging.getLogger(f"mau.{name}")
    assert isinstance(logger, TraceLogger)
    return logger
