"""Random secrets of every kind the scrubber must catch, for property and end-to-end tests.

``secrets()`` is a hypothesis strategy of :class:`Planted`: the text to plant (a key, an
assignment, a command line, a URL, a key split by zero-width characters, a base64-encoded key,
any of them JSON-escaped inside a string)
and ``material``, the random part that must not reach Matrix. :func:`leaked` says whether any
8-character window of that material shows up in a serialised request or response.
"""

from __future__ import annotations

import base64
import json
import random
from dataclasses import dataclass

from hypothesis import strategies as st

ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
HEX = "0123456789abcdef"
ZERO_WIDTH = ("\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad")
WINDOW = 8


@dataclass(frozen=True)
class Planted:
    kind: str
    text: str
    material: str
    """The random part of the secret; no ``WINDOW``-long slice of it may leave."""


def _rand(alphabet: str, low: int, high: int | None = None) -> st.SearchStrategy[str]:
    """Random-looking strings whatever hypothesis draws (it likes "AAAA…", which could match
    unrelated text): a drawn seed and length pick the characters."""

    def make(seed: int, n: int) -> str:
        rng = random.Random(seed)
        return "".join(rng.choice(alphabet) for _ in range(n))

    return st.builds(make, st.integers(0, 2**32), st.integers(low, high or low))


def _key(
    kind: str, prefix: str, alphabet: str, low: int, high: int | None = None
) -> st.SearchStrategy[Planted]:
    return _rand(alphabet, low, high).map(lambda r: Planted(kind, prefix + r, r))


KEYS: dict[str, st.SearchStrategy[Planted]] = {
    "anthropic": _key("anthropic", "sk-ant-api03-", ALNUM + "-_", 40, 90),
    "openai": _key("openai", "sk-proj-", ALNUM, 24, 60),
    "github": _key("github", "ghp_", ALNUM, 36),
    "github_pat": _key("github_pat", "github_pat_11", ALNUM + "_", 40, 82),
    "gitlab": _key("gitlab", "glpat-", ALNUM, 20, 26),
    "slack": _key("slack", "xoxb-1234567890-", ALNUM, 24),
    "aws": _key("aws", "AKIA", UPPER, 16),
    "google": _key("google", "AIza", ALNUM, 35),
    "stripe": _key("stripe", "sk_live_", ALNUM, 24, 40),
    "matrix": _key("matrix", "syt_", ALNUM, 30, 50),
    "npm": _key("npm", "npm_", ALNUM, 36),
    "huggingface": _key("huggingface", "hf_", ALNUM, 34),
    "sendgrid": _rand(ALNUM, 22).flatmap(
        lambda a: _rand(ALNUM, 43).map(lambda b: Planted("sendgrid", f"SG.{a}.{b}", b))
    ),
    "jwt": _rand(ALNUM, 20, 60).map(
        lambda r: Planted("jwt", f"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIx{r}.{r[::-1]}sig", r)
    ),
    "private_key": _rand(ALNUM, 64, 200).map(
        lambda r: Planted(
            "private_key",
            f"-----BEGIN RSA PRIVATE KEY-----\nMIIE{r}\n-----END RSA PRIVATE KEY-----",
            r,
        )
    ),
}

_NAMES = ("DB_PASS", "PASSWORD", "MYSQL_PWD", "api_key", "SECRET_KEY", "auth_token", "x-pass")


def _case(name: str, style: int) -> str:
    return (name.upper(), name.lower(), name.title(), name)[style % 4]


ASSIGNMENTS = st.builds(
    lambda name, style, sep, quote, r: Planted(
        "assignment", f"{_case(name, style)}{sep}{quote}{r}{quote}", r
    ),
    st.sampled_from(_NAMES),
    st.integers(0, 3),
    st.sampled_from(["=", ": ", " = ", ":"]),
    st.sampled_from(["", '"', "'"]),
    _rand(ALNUM + "!#%+", 10, 30),
)

COMMANDS: dict[str, st.SearchStrategy[Planted]] = {
    "mysql": _rand(ALNUM, 10, 24).map(
        lambda r: Planted("mysql", f"mysql -h db -u root -p{r} app < dump.sql", r)
    ),
    "curl": _rand(ALNUM, 10, 24).map(
        lambda r: Planted("curl", f"curl -s -u deploy:{r} https://ci.example/api", r)
    ),
    "slack_webhook": _rand(ALNUM, 24).map(
        lambda r: Planted(
            "slack_webhook", f"https://hooks.slack.com/services/T0ABCDEFG/B0HIJKLMN/{r}", r
        )
    ),
    "url_credentials": _rand(ALNUM, 10, 24).map(
        lambda r: Planted("url_credentials", f"postgres://app:{r}@db.internal:5432/app", r)
    ),
    "bearer": _rand(ALNUM, 20, 40).map(
        lambda r: Planted("bearer", f"Authorization: Bearer {r}", r)
    ),
    "cli_flag": _rand(ALNUM, 10, 24).map(
        lambda r: Planted("cli_flag", f"deploy --password {r} --yes", r)
    ),
}

_PLAIN = st.one_of(*KEYS.values(), ASSIGNMENTS, *COMMANDS.values())


def _split(planted: Planted, data: st.DataObject) -> Planted:
    """The secret with zero-width characters inside its random part."""
    text = planted.text
    start = text.index(planted.material)
    cuts = sorted(
        data.draw(
            st.lists(
                st.integers(start + 1, start + len(planted.material) - 1), min_size=1, max_size=4
            )
        )
    )
    pieces, last = [], 0
    for cut in cuts:
        pieces.append(text[last:cut])
        pieces.append(data.draw(st.sampled_from(ZERO_WIDTH)))
        last = cut
    pieces.append(text[last:])
    return Planted("zero_width_" + planted.kind, "".join(pieces), planted.material)


def _encoded(planted: Planted, urlsafe: bool) -> Planted:
    encode = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    text = encode(planted.text.encode()).decode()
    # The encoded form is the secret here: any 8 characters of it would give part of it away.
    return Planted("base64_" + planted.kind, text, text.rstrip("="))


def secrets() -> st.SearchStrategy[Planted]:
    split = st.tuples(st.one_of(*KEYS.values(), *COMMANDS.values()), st.data()).map(
        lambda pair: _split(*pair)
    )
    encoded = st.builds(_encoded, st.one_of(*KEYS.values(), ASSIGNMENTS), st.booleans())
    # Escaped once more (JSON text inside a string): "\\nAKIA…" has no word boundary.
    escaped = _PLAIN.map(
        lambda p: Planted("escaped_" + p.kind, "note\\n" + json.dumps(p.text)[1:-1], p.material)
    )
    return st.one_of(_PLAIN, split, encoded, escaped)


def example_of_each() -> list[Planted]:
    """One fixed secret of every kind (for end-to-end tests, where examples are expensive)."""
    out = [
        Planted("anthropic", "sk-ant-api03-" + "Q7w" * 20, "Q7w" * 20),
        Planted("github", "ghp_" + "Zq8Lm2" * 6, "Zq8Lm2" * 6),
        Planted("aws", "AKIA" + "Z7Q2X9K4W1P8M3R6", "Z7Q2X9K4W1P8M3R6"),
        Planted("db_pass", "DB_PASS=Tr0ub4dor3xyz", "Tr0ub4dor3xyz"),
        Planted("db_pass_lower", "export db_pass='Kx91mmQa2bb'", "Kx91mmQa2bb"),
        Planted("mysql", "mysql -u root -pHunter2Zeta app", "Hunter2Zeta"),
        Planted("curl", "curl -u ci:Wq8PlmZ3vv https://ci.example/", "Wq8PlmZ3vv"),
        Planted(
            "slack_webhook",
            "https://hooks.slack.com/services/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",
            "Xy7Gh3Kd9Lp2Qw4Er6Ty8Ui0",
        ),
        Planted(
            "zero_width_github",
            "ghp_Vb3Nm8\u200bQw2Er5Ty7Ui9Op1As4Df6Gh8Jk0L",
            "Qw2Er5Ty7Ui9Op1As4Df6Gh8Jk0L",
        ),
    ]
    out.append(
        Planted("escaped_aws", r'{"env": "A=1\nAKIAQ3W8E2R7T1Y6U4I9\n"}', "Q3W8E2R7T1Y6U4I9")
    )
    key = "sk-ant-api03-" + "Mk4Pz8" * 8
    encoded = base64.b64encode(key.encode()).decode()
    out.append(Planted("base64_anthropic", encoded, encoded.rstrip("=")))
    return out


def windows(material: str) -> set[str]:
    if len(material) <= WINDOW:
        return {material}
    return {material[i : i + WINDOW] for i in range(len(material) - WINDOW + 1)}


def leaked(planted: Planted, *texts: str | bytes) -> str | None:
    """The first slice of the planted material found in any of ``texts`` (raw or JSON-escaped),
    or None."""
    haystack = "\n".join(t.decode("utf-8", "replace") if isinstance(t, bytes) else t for t in texts)
    unescaped = haystack
    try:  # bodies are JSON: look at the strings as a client would show them too
        unescaped = json.dumps(json.loads(haystack), ensure_ascii=False)
    except ValueError:
        pass
    for window in windows(planted.material):
        if window in haystack or window in unescaped:
            return window
    return None
