"""``host_files``: where files from Matrix land on Claude's host, and that nothing climbs out."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from claude_bridge import host_files
from claude_bridge.control.attachments import file_name, mimetype_of
from claude_bridge.control.file_carrier import size_text, valid_root
from claude_bridge.matrix.inbound_events import FileMessage, Message, parse


@pytest.mark.parametrize(
    ("given", "safe"),
    [
        ("screenshot.png", "screenshot.png"),
        ("Screen Shot 10.00.png", "Screen_Shot_10.00.png"),
        ("../../etc/passwd", "_.._etc_passwd"),
        ("..", "file"),
        (".bashrc", "bashrc"),
        ("a/b\\c\0d\n.png", "a_b_c_d_.png"),
        ("", "file"),
        ("x" * 300 + ".png", "x" * 116 + ".png"),
        ("ünïcode.jpg", "_n_code.jpg"),
    ],
)
def test_names_are_one_safe_component(given: str, safe: str) -> None:
    assert host_files.safe_component(given) == safe
    assert "/" not in safe and not safe.startswith(".")


def test_host_path_stays_in_its_session_folder(tmp_path: Path) -> None:
    root = str(tmp_path)
    path = host_files.host_path(root, "../../x", 7, "../../../evil.sh")
    assert os.path.dirname(os.path.dirname(path)) == root
    assert os.path.basename(path) == "7-_.._.._evil.sh"


def test_write_file_is_private_and_refuses_escapes_and_links(tmp_path: Path) -> None:
    root = tmp_path / "attachments"
    good = host_files.host_path(str(root), "s1", 1, "a.png")
    host_files.write_file(str(root), good, b"data")
    assert Path(good).read_bytes() == b"data"
    assert stat.S_IMODE(os.stat(good).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(good)).st_mode) == 0o700
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    for bad in (str(tmp_path / "outside.png"), str(root / "s1" / "deeper" / "x.png")):
        with pytest.raises(host_files.FileRefused):
            host_files.write_file(str(root), bad, b"x")
    (tmp_path / "elsewhere").mkdir()
    (root / "linked").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(host_files.FileRefused):
        host_files.write_file(str(root), str(root / "linked" / "2-a.png"), b"x")
    assert not list((tmp_path / "elsewhere").iterdir())


def test_receive_writes_only_where_the_host_would(tmp_path: Path) -> None:
    root = str(tmp_path)
    fetched: list[str] = []

    def fetch(path: str) -> bytes:
        fetched.append(path)
        return b"bytes"

    good = {"id": 3, "name": "a.png", "path": host_files.host_path(root, "s/1", 3, "a.png")}
    evil = {"id": 4, "name": "b.png", "path": "/etc/cron.d/b.png"}
    problems = host_files.receive(fetch, root, "s/1", [good, evil, "junk"])
    assert fetched == ["/claude/v1/sessions/s%2F1/attachments/3"]
    assert Path(str(good["path"])).read_bytes() == b"bytes"
    assert len(problems) == 2 and "/etc/cron.d/b.png" in problems[0]
    answer: dict[str, object] = {"hookSpecificOutput": {"additionalContext": "text"}}
    host_files.amend_answer(answer, problems)
    assert "[claude-bridge: the file '/etc/cron.d/b.png'" in str(answer)


def test_settle_answer_does_what_an_answer_asks_of_the_host(tmp_path: Path) -> None:
    """One answer both lists a file from Matrix and asks for files of the project: the first is
    fetched and written, the second sent back (a refusal as the error header), and the answer
    comes back without either key, a file that could not be fetched named in its own text."""
    root, project = tmp_path / "files", tmp_path / "p"
    project.mkdir()
    (project / "a.py").write_bytes(b"print(1)")
    calls: list[tuple[str, str, bytes | None, dict[str, str]]] = []

    def call(method: str, path: str, body: bytes | None, headers: dict[str, str]) -> bytes:
        calls.append((method, path, body, headers))
        if path.endswith("/attachments/4"):
            raise OSError("the bridge answered HTTP 404")
        return b"png"

    good = {"id": 3, "name": "a.png", "path": host_files.host_path(str(root), "s/1", 3, "a.png")}
    lost = {"id": 4, "name": "b.png", "path": host_files.host_path(str(root), "s/1", 4, "b.png")}
    answer = {
        "reason": "go on",
        host_files.ANSWER_KEY: [good, lost],
        host_files.REQUESTS_KEY: [
            {"id": "r1", "root": str(project), "path": "a.py", "max_bytes": 100},
            {"id": "r2", "root": str(project), "path": "../x\nforged: 1", "max_bytes": 100},
        ],
    }
    out, data, problems = host_files.settle_answer(
        json.dumps(answer).encode(), "s/1", str(root), call
    )
    assert json.loads(out) == data and set(data) == {"reason"}
    assert str(data["reason"]).startswith("go on\n\n[claude-bridge: the file ")
    assert len(problems) == 1 and lost["path"] in problems[0] and "404" in problems[0]
    assert Path(str(good["path"])).read_bytes() == b"png"
    sent, refused, fetched, failed = calls
    assert sent == ("POST", "/claude/v1/sessions/s%2F1/file-requests/r1", b"print(1)", {})
    assert refused[:3] == ("POST", "/claude/v1/sessions/s%2F1/file-requests/r2", b"")
    assert "\n" not in refused[3][host_files.ERROR_HEADER]  # one header line, however refused
    assert (fetched[:2], failed[:2]) == (
        ("GET", "/claude/v1/sessions/s%2F1/attachments/3"),
        ("GET", "/claude/v1/sessions/s%2F1/attachments/4"),
    )


def test_settle_answer_leaves_what_it_cannot_read(tmp_path: Path) -> None:
    def call(method: str, path: str, body: bytes | None, headers: dict[str, str]) -> bytes:
        raise AssertionError("nothing to ask the bridge")

    for raw in (b"not json", b"[1]"):
        assert host_files.settle_answer(raw, "s", str(tmp_path), call) == (raw, {}, [])
    listed = json.dumps({"text": "hi", host_files.ANSWER_KEY: [{"id": 1}]}).encode()
    out, data, problems = host_files.settle_answer(listed, None, str(tmp_path), call)
    assert problems == ["the answer named files for no session"]
    assert data == json.loads(out) and str(data["text"]).endswith(f"[claude-bridge: {problems[0]}]")
    asked = json.dumps({"text": "", host_files.REQUESTS_KEY: "junk"}).encode()
    assert host_files.settle_answer(asked, "s", str(tmp_path), call) == (
        b'{"text": ""}',
        {"text": ""},
        [],
    )


def test_prune_removes_quiet_session_folders(tmp_path: Path) -> None:
    old = host_files.host_path(str(tmp_path), "old", 1, "a")
    new = host_files.host_path(str(tmp_path), "new", 2, "b")
    for path in (old, new):
        host_files.write_file(str(tmp_path), path, b"x")
    past = os.stat(new).st_mtime - 10 * 86400
    os.utime(os.path.dirname(old), (past, past))
    assert host_files.prune(str(tmp_path), 86400) == 1
    assert not os.path.exists(old) and os.path.exists(new)


def test_bridge_side_helpers() -> None:
    assert valid_root("/home/a/.cache/claude-bridge/attachments/") == (
        "/home/a/.cache/claude-bridge/attachments"
    )
    for bad in ("relative", "/a/../b", "/a\nb", "", "/" + "x" * 2000):
        assert valid_root(bad) is None
    assert mimetype_of("IMAGE/PNG", "") == "image/png"
    assert mimetype_of("text/html\nX: y", "image/jpeg; q=1") == "image/jpeg"
    assert mimetype_of(None, "") == "application/octet-stream"
    assert file_name("photo", "image/jpeg") == "photo.jpg"
    assert file_name("dir/shot.png", "image/png") == "shot.png"
    assert [size_text(n) for n in (5, 2048, 240 * 1024, 3 * 1024 * 1024 + 99999)] == [
        "5 B",
        "2.0 KB",
        "240 KB",
        "3.1 MB",
    ]


def test_file_messages_parse_with_caption_and_filename() -> None:
    base = {"type": "m.room.message", "event_id": "$e", "room_id": "!r", "sender": "@a:x"}
    plain = parse({**base, "content": {"msgtype": "m.image", "body": "a.png", "url": "mxc://x/y"}})
    assert isinstance(plain, FileMessage)
    assert (plain.filename, plain.caption, plain.url) == ("a.png", "", "mxc://x/y")
    captioned = parse(
        {
            **base,
            "content": {
                "msgtype": "m.file",
                "body": "look at this",
                "filename": "log.txt",
                "url": "mxc://x/z",
                "info": {"size": 12, "mimetype": "text/plain"},
            },
        }
    )
    assert isinstance(captioned, FileMessage)
    assert (captioned.filename, captioned.caption, captioned.size) == (
        "log.txt",
        "look at this",
        12,
    )
    encrypted = parse({**base, "content": {"msgtype": "m.image", "body": "a", "file": {}}})
    assert isinstance(encrypted, FileMessage) and encrypted.encrypted and encrypted.url is None
    text = parse({**base, "content": {"msgtype": "m.text", "body": "hi"}})
    assert isinstance(text, Message) and not isinstance(text, FileMessage)


def test_read_confined_never_leaves_the_project(tmp_path: Path) -> None:
    project, outside = tmp_path / "p", tmp_path / "o"
    (project / "src").mkdir(parents=True)
    outside.mkdir()
    (project / "src" / "a.py").write_bytes(b"a")
    (outside / "s").write_bytes(b"secret")
    (project / "link").symlink_to(outside / "s")
    (project / "dirlink").symlink_to(outside)
    os.mkfifo(project / "fifo")
    assert host_files.read_confined(str(project), "./src//a.py", 10) == b"a"
    for bad in ("../o/s", "/etc/passwd", "link", "dirlink/s", "src", "fifo", "", "src/../x"):
        with pytest.raises(host_files.FileRefused):
            host_files.read_confined(str(project), bad, 10)
    with pytest.raises(host_files.FileRefused, match="larger"):
        host_files.read_confined(str(project), "src/a.py", 0)


def test_read_confined_refuses_a_home_directory_as_the_project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A session started in ~ (or /) would let an operator's `!claude file .pgpass` read any
    file of the user; the host refuses such a root, however it is spelt."""
    home = tmp_path / "home" / "dev"
    (home / "src").mkdir(parents=True)
    (home / ".pgpass").write_bytes(b"db:5432:app:app:hunter2")
    (home / "src" / "a.py").write_bytes(b"a")
    (tmp_path / "homelink").symlink_to(home)
    monkeypatch.setenv("HOME", str(home))
    for root in (home, tmp_path / "home", tmp_path, Path("/"), tmp_path / "homelink", f"{home}/"):
        with pytest.raises(host_files.FileRefused, match="home directory"):
            host_files.read_confined(str(root), ".pgpass", 100)
    assert host_files.read_confined(str(home / "src"), "a.py", 10) == b"a"  # a project in ~


def test_request_paths_and_text_clearing() -> None:
    from claude_bridge.config.sections.mirror import RedactConfig
    from claude_bridge.control.commands import CommandError
    from claude_bridge.control.file_requests import clear_text, is_text, request_path
    from claude_bridge.render.scrub import scrubber_for

    assert request_path(" ./src//a.py ", "/p") == "src/a.py"
    assert request_path("/p/src/a.py", "/p") == "src/a.py"
    for bad in ("../x", "a/../../x", "/etc/passwd", "/pother/x", "", ".", "a\nb"):
        with pytest.raises(CommandError):
            request_path(bad, "/p")
    scrub = scrubber_for(RedactConfig())
    token = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
    cleared = clear_text(f"x={token}\n".encode(), scrub)
    assert cleared is not None and token.encode() not in cleared[0] and cleared[1]
    assert clear_text(b"plain\n", scrub) == (b"plain\n", False)
    assert is_text(b"hello") and not is_text(b"\x89PNG\0") and not is_text(b"\xff\xfe")


def test_a_media_url_is_all_of_the_string() -> None:
    """Only ``mxc://server/id``, all of it: a trailing line break (which ``$`` lets through), a
    path or a query would reach the homeserver's media API as part of the URL."""
    from claude_bridge.matrix import media

    assert media.split_mxc("mxc://localhost/AbC_1-2") == ("localhost", "AbC_1-2")
    for bad in ("mxc://localhost/abc\n", "mxc://localhost/a/../b", "mxc://h/a?x=1", "mxc://h/"):
        with pytest.raises(media.BadMediaURL):
            media.split_mxc(bad)


def _aged(path: str, days: float) -> None:
    past = os.stat(path).st_mtime - days * 86400
    os.utime(path, (past, past), follow_symlinks=False)


def test_prune_never_follows_a_link_nor_leaves_the_root(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "keep.txt").write_bytes(b"mine")
    (outside / "folder").mkdir()
    (root / "linked").symlink_to(outside)  # a symlinked session folder: never entered
    _aged(str(outside), 30)
    path = host_files.host_path(str(root), "s", 1, "a")
    host_files.write_file(str(root), path, b"x")
    session = os.path.dirname(path)
    os.symlink(outside / "keep.txt", os.path.join(session, "link-to-file"))
    os.symlink(outside / "folder", os.path.join(session, "link-to-folder"))
    _aged(session, 30)
    assert host_files.prune(str(root), 86400) == 1
    assert not os.path.exists(session)  # the links themselves went, not what they point to
    assert (outside / "keep.txt").read_bytes() == b"mine" and (outside / "folder").is_dir()
    assert (root / "linked").is_symlink()
    # a folder holding a directory (nothing the host writes) is left as it is
    odd = root / "odd"
    (odd / "inner").mkdir(parents=True)
    (odd / "inner" / "f").write_bytes(b"x")
    _aged(str(odd), 30)
    assert host_files.prune(str(root), 86400) == 0
    assert (odd / "inner" / "f").exists()
    assert host_files.prune(str(tmp_path / "missing"), 0) == 0


def test_prune_daily_runs_once_a_day_by_the_stamp(tmp_path: Path) -> None:
    root = str(tmp_path)
    old = host_files.host_path(root, "old", 1, "a")
    host_files.write_file(root, old, b"x")
    _aged(os.path.dirname(old), 8)
    assert host_files.prune_daily(root, 7 * 86400) == 1
    stamp = tmp_path / host_files.STAMP
    assert stamp.is_file() and stat.S_IMODE(stamp.stat().st_mode) == 0o600
    again = host_files.host_path(root, "again", 2, "b")
    host_files.write_file(root, again, b"x")
    _aged(os.path.dirname(again), 8)
    assert host_files.prune_daily(root, 7 * 86400) is None  # pruned today already
    assert os.path.exists(again)
    _aged(str(stamp), 1.01)
    assert host_files.prune_daily(root, 7 * 86400) == 1
    assert not os.path.exists(again)
    assert host_files.prune_daily(str(tmp_path / "none"), 0) is None  # no root: nothing to do


def test_prune_daily_refuses_a_symlinked_stamp(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_bytes(b"x")
    _aged(str(target), 5)
    root = tmp_path / "root"
    root.mkdir()
    (root / host_files.STAMP).symlink_to(target)
    _aged(str(root / host_files.STAMP), 5)
    assert host_files.prune_daily(str(root), 0) is None
    assert target.read_bytes() == b"x"


@pytest.mark.parametrize(
    ("raw", "days"), [(None, 7), ("3", 3), ("0", 0), ("-1", 7), ("soon", 7), (" 14 ", 14)]
)
def test_keep_days_from_the_environment(raw: str | None, days: int) -> None:
    env = {} if raw is None else {host_files.KEEP_DAYS_ENV: raw}
    assert host_files.keep_seconds(env) == days * 86400
