"""The quickstart's choices before it starts anything: its ports and its login file.

Ports are real loopback sockets held by this process; the whole quickstart runs in
``tests/e2e/test_quickstart.py``.
"""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from claude_bridge.devenv.datadir import QuickstartError, saved_login, write_login
from claude_bridge.devenv.processes import port_holder, port_is_free
from claude_bridge.devenv.quickstart import Ports, choose_ports
from claude_bridge.devenv.synapse import free_port

NOTHING_ASKED: dict[str, int | None] = {}


@contextmanager
def held(port: int) -> Iterator[None]:
    with socket.create_server(("127.0.0.1", port)):
        yield


def some_ports() -> Ports:
    """Three free ports, apart: the next port above one is never another of them."""
    while True:
        ports = sorted(free_port() for _ in range(3))
        if ports[1] - ports[0] > 5 and ports[2] - ports[1] > 5:
            return Ports(*ports)


def test_a_taken_default_moves_to_the_next_free_port_and_says_who_has_it() -> None:
    defaults = some_ports()
    with held(defaults.synapse):
        ports, notes = choose_ports(None, NOTHING_ASKED, defaults)
    assert ports.synapse > defaults.synapse
    assert (ports.appservice, ports.hooks) == (defaults.appservice, defaults.hooks)
    [note] = notes
    assert note.startswith(f"port {defaults.synapse} is in use by pid {os.getpid()} (")
    assert note.endswith(f"Synapse uses port {ports.synapse} instead")


def test_the_chosen_ports_are_distinct() -> None:
    port = free_port()
    ports, _ = choose_ports(None, NOTHING_ASKED, Ports(port, port, port))
    assert len({ports.synapse, ports.appservice, ports.hooks}) == 3
    assert ports.synapse == port


def test_a_port_asked_for_must_be_free() -> None:
    port = free_port()
    with held(port), pytest.raises(QuickstartError) as e:
        choose_ports(None, {"hooks": port}, some_ports())
    assert f"port {port} is in use by pid {os.getpid()}" in str(e.value)
    assert f"--hook-port {port} asks for it" in str(e.value)


def test_a_saved_port_that_is_taken_is_not_moved_behind_the_users_back() -> None:
    """Synapse's URL is in the user's client and the hook URL in Claude Code's settings."""
    saved = some_ports()
    with held(saved.synapse), pytest.raises(QuickstartError) as e:
        choose_ports(saved, NOTHING_ASKED)
    assert "where an earlier run put Synapse" in str(e.value)
    assert "pass --port " in str(e.value)
    with held(saved.hooks), pytest.raises(QuickstartError) as e:
        choose_ports(saved, NOTHING_ASKED)
    assert "pass --hook-port " in str(e.value) and "install-hooks again" in str(e.value)

    moved = free_port()
    assert choose_ports(saved, {"synapse": moved})[0] == Ports(moved, saved.appservice, saved.hooks)


def test_the_appservice_port_moves_by_itself() -> None:
    """Only Synapse and the bridge know it, and both are configured by the quickstart."""
    saved = some_ports()
    with held(saved.appservice):
        ports, [note] = choose_ports(saved, NOTHING_ASKED)
    assert ports.appservice != saved.appservice and (ports.synapse, ports.hooks) == (
        saved.synapse,
        saved.hooks,
    )
    assert f"uses port {ports.appservice} instead" in note


def test_the_holder_of_a_port_is_named() -> None:
    port = free_port()
    assert port_is_free(port) and port_holder(port) is None
    with held(port):
        holder = port_holder(port)
        assert not port_is_free(port)
    assert holder is not None and holder.pid == os.getpid()
    assert "pytest" in holder.command or "python" in holder.command


def test_the_login_file_is_yaml_that_reads_back(tmp_path: Path) -> None:
    """The user id starts with '@', which cannot start a plain YAML scalar."""
    path = write_login(tmp_path, "@admin:localhost", "pw: #1 'x'", "http://127.0.0.1:8008")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert YAML(typ="safe").load(path.read_text()) == {
        "homeserver": "http://127.0.0.1:8008",
        "user": "@admin:localhost",
        "password": "pw: #1 'x'",
    }
    assert saved_login(tmp_path)["password"] == "pw: #1 'x'"


def test_the_login_of_an_earlier_version_is_read_and_replaced(tmp_path: Path) -> None:
    legacy = tmp_path / "login.txt"
    legacy.write_text("user: @admin:localhost\npassword: Xy-12_ab\n")  # what 0.1 wrote
    login = saved_login(tmp_path)
    assert login == {"user": "@admin:localhost", "password": "Xy-12_ab"}
    write_login(tmp_path, login["user"], login["password"], "http://127.0.0.1:8008")
    assert not legacy.exists()
    assert saved_login(tmp_path)["password"] == "Xy-12_ab"


def test_an_unreadable_login_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "login.yaml").write_text("user: [unclosed\n")
    with pytest.raises(QuickstartError, match=r"login\.yaml is not readable"):
        saved_login(tmp_path)
