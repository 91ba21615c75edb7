"""The event catalogue is the one list of hook events: models, installer and renderers agree with
it, its registries refuse clashes, and no other module of the package names an event."""

from __future__ import annotations

import ast
import inspect
import typing
from pathlib import Path

import pytest

import claude_bridge
from claude_bridge import installer
from claude_bridge.events import models
from claude_bridge.events.catalogue import (
    CATALOGUE,
    PERMISSION_REQUEST,
    STOP,
    UNKNOWN,
    Catalogue,
    EventKind,
    kind_of,
)
from claude_bridge.events.models import HookEvent, ToolEvent
from claude_bridge.events.parse import parse_hook_event
from claude_bridge.render.events import render_event
from claude_bridge.render.messages import RenderContext
from claude_bridge.render.registry import RENDERERS, RendererClash, RendererRegistry

PACKAGE = Path(claude_bridge.__file__).parent
# The catalogue is the only module that spells event names.
ALLOWED = {PACKAGE / "events" / "catalogue.py"}
ALL_VERSIONS = (999, 0, 0)


def test_every_input_model_belongs_to_the_kind_of_its_name() -> None:
    declared = {
        cls
        for _, cls in inspect.getmembers(models, inspect.isclass)
        if issubclass(cls, HookEvent) and cls not in (HookEvent, ToolEvent)
    }
    typed = {kind.model for kind in CATALOGUE if kind.model is not HookEvent}
    assert typed == declared
    for kind in CATALOGUE:
        if kind.model is not HookEvent:
            assert kind.model.__name__ == kind.name
        event = parse_hook_event({"session_id": "s", "hook_event_name": kind.name})
        assert type(event) is kind.model


def test_the_installer_installs_exactly_what_the_catalogue_says() -> None:
    groups = installer.desired_hooks(url="http://127.0.0.1:1", claude_version=ALL_VERSIONS)
    expected = [kind for kind in CATALOGUE if kind.install is not None]
    assert list(groups) == [kind.name for kind in expected]
    for kind in expected:
        assert kind.install is not None
        handler = groups[kind.name]["hooks"][0]
        assert handler["timeout"] == kind.install.timeout
        assert handler["type"] == ("http" if kind.install.http else "command")
        assert ("matcher" in groups[kind.name]) is kind.install.matcher
    # Events newer than the Claude Code in use are left out.
    tested = installer.parse_version(installer.CLAUDE_CODE_VERSION)
    older = installer.desired_hooks(url="http://127.0.0.1:1", claude_version=(2, 1, 0))
    assert set(older) == {k.name for k in expected if k.install and k.install.since <= (2, 1, 0)}
    assert set(older) < set(groups)
    assert tested >= max(k.install.since for k in expected if k.install)


def test_each_kind_has_its_renderer_and_each_renderer_takes_its_kinds_model() -> None:
    assert RENDERERS.names() == {kind.name for kind in CATALOGUE if kind.own_renderer}
    for kind in CATALOGUE:
        renderer = RENDERERS.get(kind.name)
        if renderer is None:
            continue
        takes = typing.get_type_hints(renderer)["event"]
        assert issubclass(kind.model, takes), (kind.name, takes)


def test_a_kind_without_its_own_renderer_shows_as_an_unknown_event() -> None:
    plain = [kind for kind in CATALOGUE if not kind.own_renderer]
    assert plain  # UserPromptExpansion and the newer events
    for kind in plain:
        event = parse_hook_event({"session_id": "s", "hook_event_name": kind.name})
        [shown] = render_event(event, RenderContext(thread_id="t", project="p"))
        assert shown.content["body"] == f"⚙️ {kind.name}"
        assert render_event(event, RenderContext("t", "p", mirror={"unknown_events": False})) == []


def test_the_registry_refuses_unknown_names_clashes_and_kinds_without_a_renderer() -> None:
    registry = RendererRegistry()
    registry.register(STOP.name, RENDERERS.get(STOP.name))  # type: ignore[arg-type]
    with pytest.raises(RendererClash, match="already"):
        registry.register(STOP.name, lambda event, env: [])
    with pytest.raises(RendererClash, match="not in the event catalogue"):
        registry.register("SomeFutureEvent", lambda event, env: [])
    plain = next(kind for kind in CATALOGUE if not kind.own_renderer)
    with pytest.raises(RendererClash, match="no renderer of its own"):
        registry.register(plain.name, lambda event, env: [])
    assert registry.names() == {STOP.name}


def test_the_catalogue_refuses_a_second_kind_of_one_name() -> None:
    catalogue = Catalogue()
    catalogue.add(EventKind("Stop"))
    with pytest.raises(ValueError, match="already"):
        catalogue.add(EventKind("Stop"))
    with pytest.raises(ValueError, match="empty"):
        catalogue.add(EventKind(""))


def test_names_the_catalogue_does_not_list_get_the_unknown_traits() -> None:
    assert kind_of("SomeFutureEvent") is UNKNOWN
    assert kind_of(None) is UNKNOWN and kind_of(7) is UNKNOWN
    assert kind_of(STOP.name) is STOP
    assert "SomeFutureEvent" not in CATALOGUE and STOP.name in CATALOGUE
    # A permission request must not settle itself.
    assert PERMISSION_REQUEST.settles_approvals is None


def _event_names_outside_the_catalogue() -> list[str]:
    names = {kind.name for kind in CATALOGUE}
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path in ALLOWED:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Constant) and node.value in names:
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: {node.value!r}")
    return found


def test_only_the_catalogue_spells_event_names() -> None:
    found = _event_names_outside_the_catalogue()
    assert not found, "use the catalogue's constants (events/catalogue.py):\n" + "\n".join(found)


def test_the_spelling_check_finds_a_quoted_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The check above can fail: a module quoting an event name is reported.
    (tmp_path / "events").mkdir()
    (tmp_path / "events" / "catalogue.py").write_text('STOP = "Stop"\n')
    (tmp_path / "sneaky.py").write_text('TURN_ENDS = frozenset({"Stop", "SessionEnd"})\n')
    monkeypatch.setattr(f"{__name__}.PACKAGE", tmp_path)
    monkeypatch.setattr(f"{__name__}.ALLOWED", {tmp_path / "events" / "catalogue.py"})
    assert _event_names_outside_the_catalogue() == [
        "sneaky.py:1: 'Stop'",
        "sneaky.py:1: 'SessionEnd'",
    ]
