"""Secret scrubbing: every string bound for Matrix passes through a :class:`Scrubber`.

Patterns favour catching a secret over sparing prose: a false positive costs a word in a chat
message, a miss leaks a credential into a room that may be federated and archived forever.
Patterns start at a fixed keyword or bounded prefix so a long run of word characters cannot make
one quadratic. Distinctive key prefixes (``ghp_``, ``sk-ant-``…) match even glued to a word;
short generic ones (``sk-``, ``AKIA``) need a word boundary to spare words like ``task-…``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from claude_bridge.render.options import RedactConfig
from claude_bridge.render.text import clean

_SECRET_NAMES = (
    r"password|passwd|passphrase|secret|token|api[_-]?key|apikey|access[_-]?key|"
    r"secret[_-]?key|private[_-]?key|client[_-]?secret|auth[_-]?token|credentials?"
)

DEFAULT_PATTERNS: tuple[str, ...] = (
    # Private key blocks, also when cut off before their END line.
    r"-----BEGIN [A-Z0-9 ]{0,40}PRIVATE KEY( BLOCK)?-----[\s\S]*?"
    r"(?:-----END [A-Z0-9 ]{0,40}PRIVATE KEY( BLOCK)?-----|\Z)",
    r"sk-ant-[A-Za-z0-9_\-]{8,}",  # Anthropic
    r"\bsk-(?:proj|svcacct|admin)-[A-Za-z0-9_\-]{16,}",  # OpenAI project/service keys
    r"\bsk-[A-Za-z0-9]{20,}",  # OpenAI legacy
    r"(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{20,}",  # GitHub tokens
    r"github_pat_[A-Za-z0-9_]{20,}",
    r"glpat-[A-Za-z0-9_\-]{20,}",  # GitLab
    r"xox[abprs]-[A-Za-z0-9\-]{10,}",  # Slack
    r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",  # AWS access key id
    r"AIza[0-9A-Za-z_\-]{35}",  # Google API key
    r"(?:sk|rk)_(?:live|test)_[0-9A-Za-z]{16,}",  # Stripe
    r"syt_[A-Za-z0-9_]{10,}",  # Matrix (Synapse) access token
    r"\bnpm_[A-Za-z0-9]{36}",
    r"\bhf_[A-Za-z0-9]{30,}",  # Hugging Face
    r"eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}",  # JWT
    # Authorization headers and bearer tokens: keep the scheme, drop the credential.
    r"(?i)\bbearer\s+(?P<secret>[A-Za-z0-9\-._~+/]{8,}=*)",
    r"(?i)\bauthorization[\"']?\s*[:=]\s*[\"']?(?:(?:basic|bearer|token|digest)\s+)?(?P<secret>[^\s\"',;\[\]]{8,})",
    # AWS secret in config files/env, whatever its key spelling.
    r"(?i)aws_secret_access_key[\"']?\s*[:=]\s*[\"']?(?P<secret>[A-Za-z0-9/+=]{16,})",
    # password=…, "api_key": "…", DB_PASSWORD: …, token=… in query strings.
    # The keyword ends the key (DB_PASSWORD=, "api_key":); matching from it keeps this fast.
    r"(?i)(?:" + _SECRET_NAMES + r")[\"']?\s*[:=]\s*[\"']?"
    r"(?P<secret>[^\s\"'`,;&<>()\[\]{}]{3,})",
    # Credentials in URLs: scheme://user:password@host
    r"(?i)\b[a-z][a-z0-9+.\-]{0,20}://[^\s:/@]{1,100}:(?P<secret>[^\s@/]{1,200})@",
)

# Dictionary keys whose string value is a secret whatever it looks like (tool_input etc.).
_SECRET_KEY = re.compile(r"(?i)^(?:[\w.\-]{0,40}[_.\-])?(?:" + _SECRET_NAMES + r")$")


_CACHED_LENGTH = 512


@dataclass(frozen=True)
class Scrubber:
    """Compiled redaction rules; ``Scrubber.off()`` only cleans unencodable characters."""

    patterns: tuple[re.Pattern[str], ...]
    replacement: str = "[redacted]"
    by_key: bool = True
    """Also hide any string stored under a secret-named key (``{"password": …}``)."""

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
        for pattern in self.patterns:
            if "secret" in pattern.groupindex:
                value = pattern.sub(self._keep_prefix, value)
            else:
                value = pattern.sub(self.replacement, value)
        return value

    def _keep_prefix(self, match: re.Match[str]) -> str:
        start, end = match.span("secret")
        if start < 0:
            return self.replacement
        whole = match.group(0)
        base = match.start()
        return whole[: start - base] + self.replacement + whole[end - base :]

    def value(self, value: Any, key: str | None = None) -> Any:
        """Scrub every string in a JSON-like value; a secret-named key hides its whole value."""
        if isinstance(value, str):
            if self.by_key and key is not None and value and _SECRET_KEY.match(key):
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

    def data(self, data: bytes) -> bytes:
        """Scrub an attachment; text is decoded leniently since it is only ever text here."""
        return self.text(data.decode("utf-8", errors="replace")).encode("utf-8")


def scrubber_for(config: RedactConfig) -> Scrubber:
    if not config.enabled:
        return Scrubber.off()
    return _compile(config.use_defaults, tuple(config.patterns), config.replacement)


@lru_cache(maxsize=32)
def _compile(use_defaults: bool, extra: tuple[str, ...], replacement: str) -> Scrubber:
    sources: Iterable[str] = (*(DEFAULT_PATTERNS if use_defaults else ()), *extra)
    return Scrubber(tuple(re.compile(s) for s in sources), replacement, by_key=use_defaults)
