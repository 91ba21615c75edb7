"""Replies read the same on every client: Element X's allow-list, tables, a plain-text body."""

from __future__ import annotations

import json

import pytest

from claude_bridge.render.markdown import markdown_to_html, markdown_to_text
from claude_bridge.render.tables import TABLE_WIDTH, columns

from .clients import unsupported
from .helpers import SNAPSHOTS, assert_valid, event, render

EVERYTHING = """\
# One
## Fixed: the parser's off-by-one
###### Six

I changed **two** files, _carefully_, and ~~broke~~ nothing:

| File | Lines | Status |
|:-----|------:|:------:|
| `src/parser.py` | 12 | ✅ |
| tests/test_parser.py | 30 | ✅ new |

3. third
4. fourth
   - nested *item*

> quoted **bold**

---

```python
def f(x): return x < 1
```

    indented code

See [the docs](https://example.org/docs) and <https://a.b/c>; ![diagram](https://example.org/d.png)
"""


def test_the_check_sees_what_element_x_drops() -> None:
    # The allow-list check itself can fail: what the old renderer sent is flagged.
    old = '<h2>x</h2><table><tr><td style="text-align:right">a</td></tr></table><hr><span>y</span>'
    assert unsupported(old) == ["h2", "table", "tr", "td", "td@style", "hr", "span"]
    assert unsupported('<pre><code class="language-py">x</code></pre><ol start="3"></ol>') == []


def test_every_markdown_construct_uses_only_what_element_x_keeps() -> None:
    html = markdown_to_html(EVERYTHING)
    assert unsupported(html) == []
    assert "<p><strong>Fixed: the parser's off-by-one</strong></p>" in html
    assert "<p>———</p>" in html and '<ol start="3">' in html


def test_snapshots_use_only_what_element_x_keeps() -> None:
    bodies = [
        msg["content"]["formatted_body"]
        for path in sorted(SNAPSHOTS.glob("*.json"))
        for msg in json.loads(path.read_text(encoding="utf-8"))
        if "formatted_body" in msg["content"]
    ]
    assert len(bodies) >= 8
    assert [unsupported(b) for b in bodies] == [[]] * len(bodies)


def test_a_narrow_table_is_aligned_monospace() -> None:
    html = markdown_to_html(EVERYTHING)
    grid = (
        "File                 | Lines | Status\n"
        "---------------------+-------+-------\n"
        "src/parser.py        |    12 |   ✅\n"
        "tests/test_parser.py |    30 | ✅ new"
    )
    assert f"<pre><code>{grid}</code></pre>" in html
    assert grid in markdown_to_text(EVERYTHING)  # the body shows the same table


def test_wide_characters_take_two_columns() -> None:
    assert columns("✅") == 2 and columns("表") == 2 and columns("e\u0301") == 1
    assert columns("👍\ufe0f") == 2
    text = markdown_to_text("| a | b |\n|---|---|\n| 表表 | x |\n| yyyy | z |")
    lines = text.split("\n")
    assert [columns(line.split("|")[0]) for line in lines if "|" in line] == [5, 5, 5]


def test_a_wide_table_is_a_list() -> None:
    long = "splits the **input** into tokens and then " + "more words " * 5
    source = f"| Name | What it does | Where |\n|---|---|---|\n| `parse` | {long} | src/p.py |\n| x | | |"
    html = markdown_to_html(source)
    assert "<pre>" not in html and "<ul>" in html
    assert (
        "<li><strong><code>parse</code></strong> — What it does: splits the "
        "<strong>input</strong> into tokens" in html
    )
    assert "· Where: src/p.py</li>" in html
    assert "<li><strong>x</strong></li>" in html  # empty cells are left out
    text = markdown_to_text(source)
    assert text.startswith("• parse — What it does: splits the input into tokens")
    assert text.endswith("\n• x")
    assert max(columns(line) for line in text.split("\n")) > TABLE_WIDTH


@pytest.mark.parametrize(
    ("source", "body"),
    [
        ("## Fixed: the parser", "Fixed: the parser"),
        ("I changed **two** files, _carefully_", "I changed two files, carefully"),
        ("run `pytest -x` now", "run `pytest -x` now"),
        ("- a\n- b\n\n1. c\n2. d", "• a\n• b\n\n1. c\n2. d"),
        ("- a\n  - nested", "• a\n  • nested"),
        ("```sh\nls -l\n```", "```sh\nls -l\n```"),
        ("> said **this**", "> said this"),
        ("the ~~old~~ new way", "the ~~old~~ new way"),
        ("[docs](https://x.org/d) and <https://x.org>", "docs (https://x.org/d) and https://x.org"),
        ("a  \nb\nc", "a\nb\nc"),
        ("not \\*emphasis\\* &amp; 1 < 2", "not *emphasis* & 1 < 2"),
        ("---", "———"),
    ],
)
def test_the_body_is_plain_text(source: str, body: str) -> None:
    assert markdown_to_text(source) == body


def test_a_reply_previews_as_plain_text() -> None:
    """The room list shows the body's first line: no ``## `` or ``**`` there."""
    reply = "## Fixed: the **parser**\n\nDetails:\n\n- `limit()` takes *n*\n"
    (msg,) = render(event("Stop", last_assistant_message=reply))
    assert_valid([msg])
    assert msg.content["body"] == "Fixed: the parser\n\nDetails:\n\n• `limit()` takes n"
    assert msg.content["formatted_body"].startswith("<p><strong>Fixed: the <strong>parser")
    (prompt,) = render(event("UserPromptSubmit", prompt="fix **this**"), title="t")
    assert prompt.content["body"] == "🧑‍💻 Prompt:\n> fix this"
