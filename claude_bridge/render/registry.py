"""Renderers by event name: each renderer registers itself against its catalogue kind.

The catalogue (``events/catalogue.py``) sits below ``render`` and cannot name render functions,
so they come to it: ``@renders(kind)`` on the function. A name the catalogue does not list, a
kind it marks ``own_renderer=False``, and a second renderer for one name are refused at import,
so a clash cannot wait for the first event of that kind to show.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from claude_bridge.events.catalogue import CATALOGUE, EventKind
from claude_bridge.render.content import Env
from claude_bridge.render.messages import OutboundMessage

Renderer = Callable[[Any, Env], list[OutboundMessage]]
"""Called with the event parsed as its kind's model (``EventKind.model``)."""
R = TypeVar("R", bound=Renderer)


class RendererClash(ValueError):
    """A renderer registered for a name the catalogue does not give one, or a second time."""


class RendererRegistry:
    def __init__(self) -> None:
        self._renderers: dict[str, Renderer] = {}

    def register(self, name: str, renderer: Renderer) -> None:
        kind = CATALOGUE.get(name)
        if kind is None:
            raise RendererClash(f"{name!r} is not in the event catalogue")
        if not kind.own_renderer:
            raise RendererClash(f"the catalogue says {name!r} has no renderer of its own")
        if name in self._renderers:
            raise RendererClash(f"{name!r} has a renderer already: {self._renderers[name]}")
        self._renderers[name] = renderer

    def get(self, name: str) -> Renderer | None:
        return self._renderers.get(name)

    def names(self) -> frozenset[str]:
        return frozenset(self._renderers)


RENDERERS = RendererRegistry()


def renders(kind: EventKind) -> Callable[[R], R]:
    """Decorator: the function renders ``kind``'s events."""

    def register(renderer: R) -> R:
        RENDERERS.register(kind.name, renderer)
        return renderer

    return register
