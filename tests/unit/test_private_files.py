"""Files holding secrets or raw hook payloads are created 0600 in 0700 directories, and doctor
says when it finds one others can read.

Before: the SQLite database and its -wal and -shm files, the development Synapse's shared
secret, homeserver.yaml and signing key were created 0644 (umask 022), their directories 0755.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from claude_bridge.config import parse_config
from claude_bridge.devenv.synapse import LocalSynapse
from claude_bridge.doctor.checks import check_file_modes
from claude_bridge.files import open_to_others, private_dir
from claude_bridge.provision import provision
from claude_bridge.registration import build_registration
from claude_bridge.store.database import create_database


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    """The umask most systems run with: 0644 files, 0755 directories unless asked otherwise."""
    old = os.umask(0o022)
    yield
    os.umask(old)


async def test_sqlite_database_wal_and_shm_are_private(tmp_path: Path) -> None:
    directory = tmp_path / "new" / "data"
    db = create_database(f"sqlite:{directory / 'bridge.db'}")
    await db.start()  # migrates: the WAL and shared-memory files exist and hold rows
    try:
        await db.execute(
            "INSERT INTO thread (id, session_id, ghost_mxid, alias, created_at, updated_at) VALUES ('t', 's', '@g:x', '#a:x', 0, 0)"
        )
        names = {p.name: mode(p) for p in directory.iterdir()}
    finally:
        await db.stop()
    assert names["bridge.db"] == names["bridge.db-wal"] == names["bridge.db-shm"] == 0o600, names
    assert mode(directory) == mode(directory.parent) == 0o700


async def test_an_existing_database_keeps_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    path.touch(mode=0o640)
    db = create_database(f"sqlite:{path}")
    await db.start()
    await db.stop()
    assert mode(path) == 0o640  # the operator's choice; doctor reports it


def test_development_synapse_secrets_are_private(tmp_path: Path) -> None:
    synapse = LocalSynapse(tmp_path / "synapse")
    synapse.write_config()
    work = tmp_path / "synapse"
    assert mode(work) == 0o700
    for name in ("registration_shared_secret", "homeserver.yaml", "localhost.signing.key"):
        assert mode(work / name) == 0o600, name


def test_setup_makes_new_directories_private(tmp_path: Path) -> None:
    config_path = tmp_path / "etc" / "config.yaml"
    registration = tmp_path / "registration" / "claude-registration.yaml"
    provision(config_path, registration, {})
    for path in (config_path, registration):
        assert mode(path) == 0o600
        assert mode(path.parent) == 0o700


def test_private_dir_leaves_existing_directories_alone(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    private_dir(shared / "a" / "b")
    assert mode(shared) == 0o755
    assert mode(shared / "a") == mode(shared / "a" / "b") == 0o700


def _setup(tmp_path: Path) -> tuple[object, Path, Path]:
    data = {
        "homeserver": {"address": "http://127.0.0.1:1", "domain": "localhost"},
        "appservice": {"as_token": "a" * 32, "hs_token": "b" * 32},
        "hooks": {"tokens": {"laptop": "c" * 32}},
        "database": "sqlite:bridge.db",
    }
    config_path, registration = tmp_path / "config.yaml", tmp_path / "registration.yaml"
    YAML().dump(data, config_path)
    config = parse_config(data)
    YAML().dump(build_registration(config), registration)
    for path in (config_path, registration):
        path.chmod(0o600)
    return config, config_path, registration


@pytest.mark.parametrize(
    "loose", ["config.yaml", "registration.yaml", "bridge.db", "bridge.db-wal"]
)
def test_doctor_names_a_file_others_can_read(tmp_path: Path, loose: str) -> None:
    config, config_path, registration = _setup(tmp_path)
    for name in ("bridge.db", "bridge.db-wal", "bridge.db-shm"):
        (tmp_path / name).touch(mode=0o600)
    assert check_file_modes(config, config_path, registration).ok  # type: ignore[arg-type]

    (tmp_path / loose).chmod(0o644)
    check = check_file_modes(config, config_path, registration)  # type: ignore[arg-type]
    assert not check.ok
    assert f"{tmp_path / loose} is 0644" in check.detail and "chmod 600" in check.detail
    assert check.fix


def test_doctor_names_a_directory_others_may_write(tmp_path: Path) -> None:
    config, config_path, registration = _setup(tmp_path)
    tmp_path.chmod(0o777)
    try:
        check = check_file_modes(config, config_path, registration)  # type: ignore[arg-type]
    finally:
        tmp_path.chmod(0o700)
    assert not check.ok and "others may replace" in check.detail


def test_absent_files_are_not_a_problem(tmp_path: Path) -> None:
    assert open_to_others(tmp_path / "missing") is None
