"""Secret scrubbing: every string bound for Matrix or out of the API passes through a
:class:`Scrubber`.

The patterns live in ``secret_patterns.py``. Before they run, invisible characters glued between
two visible ASCII characters are dropped (``sk-ant-\u200babc`` is the key it displays as); after,
each long base64 run is decoded and dropped whole when what it encodes holds a secret. Scrubbing is
a pure function of the text and the config: a retried send carries the same content.
"""

from __future__ import annotations

import base64
import binascii
import functools
import html as _html
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from claude_bridge.config.sections.mirror import RedactConfig
from claude_bridge.render.secret_patterns import DEFAULT_PATTERNS, NEEDLES, SECRET_KEY
from claude_bridge.render.text import clean

_SECRET_KEY = re.compile(SECRET_KEY)
# Zero-width and other invisible format characters, where they can only split a word: between
# two printable ASCII characters (an emoji's zero-width joiner sits between non-ASCII ones).
_INVISIBLE = re.compile(
    r"(?<=[!-~])[\u00ad\u034f\u061c\u115f\u1160\u180b-\u180f\u200b-\u200f\u202a-\u202e"
    r"\u2060-\u2064\u2066-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0]+(?=[!-~])"
)
# Escapes in text that was escaped once more; _blank_escape keeps their length.
_ESCAPE = re.compile(r"\\[nrt\"']")


def _blank_escape(match: re.Match[str]) -> str:
    """``\\n`` → two blanks, ``\\"`` → a quote and a blank: the quote still opens or closes."""
    char = match.group(0)[1]
    return char + " " if char in "\"'" else "  "


# A run that may be base64 (standard or URL-safe) long enough to hold the shortest key.
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/_\-]{16,}={0,2}")
# Decoded bytes are only searched where they look like text: random bytes almost never do.
_TEXT_BYTES = re.compile(rb"[\t\n\r -~]{8,}")

_CACHED_LENGTH = 512


@dataclass(frozen=True)
class Scrubber:
    """Compiled redaction rules; ``Scrubber.off()`` only cleans unencodable characters."""

    patterns: tuple[re.Pattern[str], ...]
    replacement: str = "[redacted]"
    by_key: bool = True
    """Also hide any string stored under a secret-named key (``{"password": …}``)."""
    needles: tuple[tuple[str, ...], ...] = ()
    """Per pattern, lowercase strings one of which each of its matches holds; a text holding
    none skips the pattern. Empty (for a pattern, or all): always run."""

    @classmethod
    def off(cls) -> Scrubber:
        return cls(patterns=(), by_key=False)

    def __post_init__(self) -> None:
        # Events repeat the same short strings (keys, tool names, paths) over and over, and the
        # patterns are most of render_event's time: remember short results.
        object.__setattr__(self, "_short", functools.lru_cache(maxsize=4096)(self._text))

    def text(self, value: str) -> str:
        if len(value) <= _CACHED_LENGTH:
            return self._short(value)  # type: ignore[attr-defined]
        return self._text(value)

    def _text(self, value: str) -> str:
        value = clean(value)
        if not self.patterns:
            return value
        value = _INVISIBLE.sub("", value)
        value = self._apply(value)
        if len(value) >= 16:
            value = _BASE64_RUN.sub(self._encoded, value)
        return value

    def _apply(self, value: str) -> str:
        lowered = value.lower()
        # Text escaped once more (JSON in a string, a repr) hides boundaries: "\\nAKIA…" has
        # no word boundary before the key. The patterns look at a view with each escape
        # written as blanks of the same length and replace at the same places in the text.
        escaped = "\\" in value
        view = _ESCAPE.sub(_blank_escape, value) if escaped else value
        for i, pattern in enumerate(self.patterns):
            needles = self.needles[i] if i < len(self.needles) else ()
            for needle in needles:
                if needle in lowered:
                    break
            else:
                if needles:
                    continue
            if not escaped:
                value = pattern.sub(functools.partial(self._replace, text=value), value)
                continue
            parts, views, last = [], [], 0
            for match in pattern.finditer(view):
                start, end = match.span()
                replaced = self._replace(match, value)
                parts += [value[last:start], replaced]
                views += [view[last:start], replaced]
                last = end
            if parts:
                value = "".join([*parts, value[last:]])
                view = "".join([*views, view[last:]])
        return value

    def _replace(self, match: re.Match[str], text: str) -> str:
        """The replacement of ``match`` (found in ``text`` or in its view): the whole match, or
        just its ``secret`` group, quotes kept."""
        if "secret" not in match.re.groupindex:
            return self.replacement
        start, end = match.span("secret")
        if start < 0:
            return self.replacement
        secret = text[start:end]
        quote = secret[0] if len(secret) > 1 and secret[0] == secret[-1] in "\"'" else ""
        return (
            text[match.start() : start] + quote + self.replacement + quote + text[end : match.end()]
        )

    def _encoded(self, match: re.Match[str]) -> str:
        """A base64 run, or the replacement when what it encodes holds a secret."""
        run = match.group(0)
        body = run.rstrip("=")
        if len(body) % 4 == 1:  # no whole byte in the last character
            body = body[:-1]
        urlsafe = "-" in body or "_" in body
        try:
            decoded = base64.b64decode(
                body + "=" * (-len(body) % 4), altchars=b"-_" if urlsafe else None
            )
        except (binascii.Error, ValueError):
            return run
        for text in _TEXT_BYTES.findall(decoded):
            plain = text.decode("ascii")
            if any(pattern.search(plain) for pattern in self.patterns):
                return self.replacement
        return run

    def is_secret_key(self, key: str) -> bool:
        return self.by_key and _SECRET_KEY.match(_INVISIBLE.sub("", key)) is not None

    def value(self, value: Any, key: str | None = None) -> Any:
        """Scrub every string in a JSON-like value; a secret-named key hides its whole value."""
        if isinstance(value, str):
            if key is not None and value and self.is_secret_key(key):
                return self.replacement
            return self.text(value)
        if isinstance(value, dict):
            out: dict[Any, Any] = {}
            for k, v in value.items():
                if isinstance(k, str):
                    out[self.text(k)] = self.value(v, k)
                else:
                    out[k] = self.value(v)
            return out
        if isinstance(value, list | tuple):
            return [self.value(v) for v in value]
        return value

    def html(self, value: str) -> str | None:
        """Scrub ``formatted_body`` HTML; None when a secret shows only once entities are decoded
        (``pass&#x27;word``, ``&quot;`` around a value): the caller drops the HTML then."""
        scrubbed = self.text(value)
        shown = _html.unescape(scrubbed)
        return scrubbed if self.text(shown) == shown else None

    def data(self, data: bytes) -> bytes:
        """Scrub an attachment; text is decoded leniently since it is only ever text here."""
        return self.text(data.decode("utf-8", errors="replace")).encode("utf-8")


def scrubber_for(config: RedactConfig, known: Iterable[str] = ()) -> Scrubber:
    """The scrubber ``config`` describes; ``known`` adds literal secrets (the bridge's own
    tokens), hidden even when redaction is switched off."""
    literal = tuple(sorted({k for k in known if len(k) >= 8}, key=lambda k: (-len(k), k)))
    if not config.enabled:
        return _compile(False, (), config.replacement, literal) if literal else Scrubber.off()
    return _compile(config.use_defaults, tuple(config.patterns), config.replacement, literal)


@lru_cache(maxsize=32)
def _compile(
    use_defaults: bool, extra: tuple[str, ...], replacement: str, literal: tuple[str, ...] = ()
) -> Scrubber:
    defaults = DEFAULT_PATTERNS if use_defaults else ()
    # The literal secrets go last: one inside a longer key would otherwise cut that key into
    # pieces too short for its own pattern.
    sources = (*defaults, *extra, *(re.escape(k) for k in literal))
    needles = tuple(NEEDLES.get(source, ()) if source in defaults else () for source in sources)
    return Scrubber(
        tuple(re.compile(s) for s in sources), replacement, by_key=use_defaults, needles=needles
    )
