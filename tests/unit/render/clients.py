"""What the clients people use keep of a ``formatted_body``, for checking what the renderer emits.

Element X is the strictest client a session is likely followed on (a phone). Its Android app
cleans every ``formatted_body`` with jsoup and this allow-list before showing it; a tag outside
the list is dropped and its text kept, so a ``<table>`` becomes its cells run together and
``<h2>`` plain text. Source (element-hq/element-x-android, commit 0e6b430b):
``libraries/matrixui/src/main/kotlin/io/element/android/libraries/matrix/ui/messages/
ToHtmlDocument.kt``, ``CustomHtmlToDomParser.safeList``. The rich text editor library it is based
on (element-hq/matrix-rich-text-editor, ``platforms/android/library/src/main/java/io/element/
android/wysiwyg/utils/HtmlToDomParser.kt``) lists the same tags plus headings and ``details``.

Element X iOS (element-hq/element-x-ios, ``ElementX/Sources/Other/HTMLParsing/
AttributedStringBuilderV2.swift``) keeps more (headings, ``sup``, ``hr``) but drops the *content*
of a ``<span>`` without its payment attribute and runs table cells together; every tag below is
one it renders.
"""

from __future__ import annotations

from html.parser import HTMLParser

ELEMENT_X_TAGS = frozenset(
    {"a", "b", "strong", "i", "em", "u", "del", "code", "ul", "ol", "li", "pre", "blockquote",
     "p", "br", "mx-reply"}
)  # fmt: skip
ELEMENT_X_ATTRIBUTES = {"a": {"href", "data-mention-type", "contenteditable"}, "ol": {"start"}}
# Dropped by Element X but harmless: the highlighting language Element Web and nheko use.
EXTRA_ATTRIBUTES = {"code": {"class"}}


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[str, tuple[str, ...]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, tuple(name for name, _ in attrs)))


def unsupported(html: str) -> list[str]:
    """Tags and attributes in ``html`` that Element X drops (with what they carry), e.g.
    ``["table", "th@style"]``; empty when all of it shows there."""
    parser = _Tags()
    parser.feed(html)
    parser.close()
    bad = []
    for tag, attrs in parser.found:
        if tag not in ELEMENT_X_TAGS:
            bad.append(tag)
        allowed = ELEMENT_X_ATTRIBUTES.get(tag, set()) | EXTRA_ATTRIBUTES.get(tag, set())
        bad.extend(f"{tag}@{name}" for name in attrs if name not in allowed)
    return bad
