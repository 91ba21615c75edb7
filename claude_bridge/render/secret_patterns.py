"""The built-in secret patterns the :class:`~claude_bridge.render.scrub.Scrubber` applies.

Patterns favour catching a secret over sparing prose: a false positive costs a word in a chat
message, a miss leaks a credential into a room that may be federated and archived forever.
Patterns start at a fixed keyword or bounded prefix so a long run of word characters cannot make
one quadratic; a pattern that looks further along a command line is bounded to the line and to a
few hundred characters. Distinctive key prefixes (``ghp_``, ``sk-ant-``…) match even glued to a
word; short generic ones (``sk-``, ``AKIA``) need a word boundary to spare words like ``task-…``.

A named group ``secret`` limits the replacement to that group. A ``secret`` that is a quoted
string keeps its quotes (``"api_key": "[redacted]"``).
"""

from __future__ import annotations

SECRET_NAMES = (
    r"password|passwd|passphrase|secret|token|api[_-]?key|apikey|access[_-]?key|"
    r"secret[_-]?key|private[_-]?key|client[_-]?secret|auth[_-]?token|credentials?|"
    r"account[_-]?key|shared[_-]?access[_-]?key"
)
"""Names whose value is a secret wherever they end a key: ``DB_PASSWORD``, ``"api_key"``."""
SHORT_NAMES = r"pass|pwd|pw|pword"
"""Short names that count only as a whole word or an identifier's last word (``DB_PASS``)."""
_SHORT_TAILS = r"ass|wd|w|word"  # SHORT_NAMES after their p, which the patterns match first

# An assigned value: a quoted string (up to its closing quote, spaces included) or a bare word.
_VALUE = r"""(?P<secret>"[^"\n]{1,500}"|'[^'\n]{1,500}'|["']?[^\s"'`,;&<>()\[\]{}]{3,})"""
# A command-line argument: quoted, or up to the next blank.
_ARG = r"""(?P<secret>'[^'\n]{1,500}'|"[^"\n]{1,500}"|[^\s'"]+)"""
# The rest of the same shell command: not across a line, a pipe or a command separator.
_SAME_COMMAND = r"[^\n|;&]{0,300}?"

_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    # (pattern, needles): the pattern can only match where the lowercased text holds a needle,
    # so a text with none of them skips it. Most text holds none of most needles.
    # Private key blocks, also when cut off before their END line.
    (
        r"-----BEGIN [A-Z0-9 ]{0,40}PRIVATE KEY( BLOCK)?-----[\s\S]*?"
        r"(?:-----END [A-Z0-9 ]{0,40}PRIVATE KEY( BLOCK)?-----|\Z)",
        ("private key",),
    ),
    (r"\bAGE-SECRET-KEY-1[0-9A-Z]{50,}", ("age-secret-key-1",)),
    (r"sk-ant-[A-Za-z0-9_\-]{8,}", ("sk-ant-",)),  # Anthropic
    (r"\bsk-(?:proj|svcacct|admin)-[A-Za-z0-9_\-]{16,}", ("sk-",)),  # OpenAI project keys
    (r"\bsk-[A-Za-z0-9]{20,}", ("sk-",)),  # OpenAI legacy
    (r"(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{20,}", ("ghp_", "gho_", "ghu_", "ghs_", "ghr_")),
    (r"github_pat_[A-Za-z0-9_]{20,}", ("github_pat_",)),
    (
        r"gl(?:pat|ptt|dt|rt|soat|cbt|imt|ft|oas|agent)-[A-Za-z0-9_\-]{20,}",  # GitLab
        (
            "glpat-",
            "glptt-",
            "gldt-",
            "glrt-",
            "glsoat-",
            "glcbt-",
            "glimt-",
            "glft-",
            "gloas-",
            "glagent-",
        ),
    ),
    (r"xox[abeprs]-[A-Za-z0-9\-]{10,}", ("xox",)),  # Slack
    (r"xapp-\d-[A-Za-z0-9\-]{10,}", ("xapp-",)),
    (r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b", ("akia", "asia")),  # AWS access key id
    (r"AIza[0-9A-Za-z_\-]{35}", ("aiza",)),  # Google API key
    (r"\bya29\.[0-9A-Za-z_\-]{20,}", ("ya29.",)),  # Google OAuth access token
    (r"\bGOCSPX-[A-Za-z0-9_\-]{20,}", ("gocspx-",)),  # Google OAuth client secret
    (r"(?:sk|rk)_(?:live|test)_[0-9A-Za-z]{16,}", ("k_live_", "k_test_")),  # Stripe
    (r"\bSG\.[A-Za-z0-9_\-]{16,}\.[A-Za-z0-9_\-]{16,}", ("sg.",)),  # SendGrid
    (r"\bdo[por]_v1_[a-f0-9]{64}", ("_v1_",)),  # DigitalOcean
    (r"\bshp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}", ("shp",)),  # Shopify
    (r"\bpypi-AgE[A-Za-z0-9_\-]{50,}", ("pypi-age",)),  # PyPI
    (r"\bdckr_pat_[A-Za-z0-9_\-]{20,}", ("dckr_pat_",)),  # Docker Hub
    (r"\bkey-[0-9a-f]{32}\b", ("key-",)),  # Mailgun
    (r"\bSK[0-9a-fA-F]{32}\b", ("sk",)),  # Twilio API key
    (r"syt_[A-Za-z0-9_]{10,}", ("syt_",)),  # Matrix (Synapse) access token
    (r"\bm[ac]t_[A-Za-z0-9_]{20,}", ("mat_", "mct_")),  # Matrix authentication service
    (r"\bnpm_[A-Za-z0-9]{36}", ("npm_",)),
    (r"\bhf_[A-Za-z0-9]{30,}", ("hf_",)),  # Hugging Face
    (r"eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}", ("eyj",)),  # JWT
    # Webhook URLs are credentials by themselves: keep the host, drop the path.
    (
        r"(?i)\bhooks\.slack\.com/(?P<secret>(?:services|workflows|triggers)/[A-Za-z0-9_/\-]{8,})",
        ("hooks.slack.com",),
    ),
    (
        r"(?i)\bdiscord(?:app)?\.com/api/webhooks/(?P<secret>[0-9]{5,}/[A-Za-z0-9_\-]{20,})",
        ("discord",),
    ),
    (r"(?i)\.webhook\.office\.com/(?P<secret>webhookb2/[^\s\"'<>]{20,})", ("webhook.office",)),
    # Signed URLs (S3, GCS, Azure SAS): the signature is the credential.
    (
        r"(?i)[?&](?:sig|signature|x-amz-signature|x-amz-security-token|x-goog-signature)="
        r"(?P<secret>[^&\s\"'<>#]{8,})",
        ("sig=", "signature=", "security-token="),
    ),
    # Authorization headers, bearer tokens and cookies: keep the scheme, drop the credential.
    (r"(?i)\bbearer\s+(?P<secret>[A-Za-z0-9\-._~+/]{8,}=*)", ("bearer",)),
    (
        r"(?i)\bauthorization[\"']?\s*[:=]\s*[\"']?(?:(?:basic|bearer|token|digest)\s+)?"
        r"(?P<secret>[^\s\"',;\[\]]{8,})",
        ("authorization",),
    ),
    (r"(?i)\b(?:set-)?cookie[\"']?\s*:\s*(?P<secret>[^\n\"']{8,})", ("cookie",)),
    # AWS secret in config files/env, whatever its key spelling.
    (
        r"(?i)aws_secret_access_key[\"']?\s*[:=]\s*[\"']?(?P<secret>[A-Za-z0-9/+=]{16,})",
        ("aws_secret_access_key",),
    ),
    # password=…, "api_key": "…", DB_PASSWORD: '…', token=… in query strings. The keyword ends
    # the key (DB_PASSWORD=, "api_key":); matching from it keeps this fast, and so does the
    # leading character class: Python's re then skips to candidate positions (6 ms → 0.7 ms
    # per 16 KB against an inline (?i) in front of the alternation).
    (
        r"(?=[pPsStTaAcC])(?i:" + SECRET_NAMES + r")[\"']?\s*[:=]\s*" + _VALUE,
        ("pass", "secret", "token", "key", "credential"),
    ),
    # DB_PASS=…, mysql_pwd: …, --pass=…, "pw": "…" (but not "tests pass: 3").
    (r"[pP](?<![a-zA-Z0-9][pP])(?i:" + _SHORT_TAILS + r")[\"']?\s*=\s*" + _VALUE, ("pass", "pw")),
    (r"[pP](?<=[_.\-\"'][pP])(?i:" + _SHORT_TAILS + r")[\"']?\s*:\s*" + _VALUE, ("pass", "pw")),
    # SIGNING_KEY=…, master-key: … with a long value (primary_key=True stays).
    (
        r"[kK](?<=[a-zA-Z0-9][_\-][kK])(?i:ey)[\"']?\s*[:=]\s*"
        r"(?P<secret>\"[^\"\n]{8,500}\"|'[^'\n]{8,500}'|[A-Za-z0-9+/=_\-.~]{12,})",
        ("key",),
    ),
    # Command-line options taking a secret as the next word: --password hunter2, --token $T.
    (
        r"--(?<![\w-]--)(?i:(?:[a-z0-9]+-)*(?:password|passwd|pass|token|secret|api-?key|"
        r"client-secret))\s+(?P<secret>'[^'\n]{1,500}'|\"[^\"\n]{1,500}\"|[^\s'\"\-][^\s'\"]*)",
        ("--",),
    ),
    # mysql -pSECRET (glued to -p), sshpass -p SECRET, redis-cli -a SECRET.
    (
        r"\b(?i:mysql|mysqldump|mysqladmin|mysqlimport|mysqlcheck|mysqlsh|mysqlslap|mariadb|"
        r"mariadb-dump|mariadb-admin)\b" + _SAME_COMMAND + r"\s-p" + _ARG,
        ("mysql", "mariadb"),
    ),
    (r"\bsshpass\b" + _SAME_COMMAND + r"\s-p\s*" + _ARG, ("sshpass",)),
    (r"\bredis-cli\b" + _SAME_COMMAND + r"\s(?:-a|--pass)\s+" + _ARG, ("redis-cli",)),
    # curl -u user:pw, wget --user user:pw, curl --proxy-user u:pw.
    (
        r"\b(?:curl|wget|xh)\b" + _SAME_COMMAND + r"\s(?:-u|-U|--user|--proxy-user|--http-user)"
        r"(?:\s+|=)?[\"']?[^\s:\"']*:(?P<secret>[^\s\"']+)",
        ("curl", "wget", "xh"),
    ),
    # Credentials in URLs: scheme://user:password@host
    (r"://[^\s:/@]{1,100}:(?P<secret>[^\s@/]{1,200})@", ("://",)),
)

DEFAULT_PATTERNS: tuple[str, ...] = tuple(pattern for pattern, _ in _RULES)
NEEDLES: dict[str, tuple[str, ...]] = dict(_RULES)
"""For each default pattern, lowercase strings one of which any match contains."""

SECRET_KEY = r"(?i)^(?:[\w.\-]{0,40}[_.\-])?(?:" + SECRET_NAMES + r"|" + SHORT_NAMES + r")$"
"""Dictionary keys whose string value is a secret whatever it looks like (``tool_input`` etc.)."""
