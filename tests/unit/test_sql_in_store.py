"""The store owns its SQL: no statement is written outside ``claude_bridge/store/``.

Every string constant (f-string parts included) in the package is scanned; one that starts like
an SQL statement is a finding unless its module is under ``store/``. Moving a query into the
repository class of its table, behind a method whose name says what it does, is the fix.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "claude_bridge"
STORE = PACKAGE / "store"

# A statement's first keyword and what must follow it; prose such as "one conditional UPDATE"
# or "Select a room" does not match.
STATEMENT = re.compile(
    r"^\s*(SELECT\s+(\*|\d|DISTINCT\b|[a-z_][\w.]*\s*(,|\(|\bFROM\b|\bAS\b))"
    r"|INSERT\s+(OR\s+\w+\s+)?INTO\b|UPDATE\s+\w+\s+SET\b|DELETE\s+FROM\s+\w+\s*($|WHERE\b|RETURNING\b|;)"
    r"|CREATE\s+(TABLE|INDEX|UNIQUE)\b|ALTER\s+TABLE\b|DROP\s+(TABLE|INDEX)\b"
    r"|PRAGMA\s+\w|BEGIN\b|WITH\s+\w+\s+AS\s*\()",
    re.IGNORECASE,
)


def _strings(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, text) of every string constant; an f-string counts as its literal parts joined
    with ``{}`` where a value goes, so ``f"SELECT {cols} FROM t"`` is found too."""
    found = []
    parts = {id(v) for n in ast.walk(tree) if isinstance(n, ast.JoinedStr) for v in n.values}
    for node in ast.walk(tree):
        if id(node) in parts:
            continue
        if isinstance(node, ast.JoinedStr):
            text = "".join(
                v.value if isinstance(v, ast.Constant) and isinstance(v.value, str) else "x"
                for v in node.values
            )
            found.append((node.lineno, text))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.append((node.lineno, node.value))
    return found


def sql_outside_store() -> list[str]:
    findings = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.is_relative_to(STORE):
            continue
        for line, text in _strings(ast.parse(path.read_text(), str(path))):
            if STATEMENT.match(text):
                findings.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {text[:60]!r}")
    return findings


def test_no_sql_statement_outside_the_store() -> None:
    assert sql_outside_store() == []


def test_the_scan_finds_statements_and_leaves_prose() -> None:
    """The check can fail: each form a query takes is found, sentences with SQL words are not."""
    sql = [
        "SELECT 1",
        "SELECT COUNT(*) FROM thread",
        "SELECT id, received_at FROM hook_event",
        "SELECT version FROM schema_version",
        "select * from thread",
        "  INSERT INTO t (a) VALUES ($1)",
        "UPDATE hook_event SET payload=$1",
        "DELETE FROM matrix_event WHERE x",
        "PRAGMA table_info(thread)",
        "SELECT pg_get_serial_sequence($1, 'id')",
    ]
    prose = [
        "Select a room to join",
        "one conditional UPDATE, so two hooks never carry the same message",
        "Delete from the list?",
        "update available",
        "SELECT",
    ]
    assert [s for s in sql if not STATEMENT.match(s)] == []
    assert [s for s in prose if STATEMENT.match(s)] == []
    tree = ast.parse('q = f"SELECT {cols} FROM thread"\nr = "UPDATE t SET a=1"')
    assert [t for _, t in _strings(tree) if STATEMENT.match(t)] == [
        "SELECT x FROM thread",
        "UPDATE t SET a=1",
    ]
