"""``config.example.yaml``, generated from the config models' field descriptions."""

from __future__ import annotations

import io
import textwrap
from typing import Any

from pydantic import BaseModel
from ruamel.yaml import YAML

from claude_bridge.config import Config

HEADER = """\
# claude-bridge configuration. Generated from the config models by
# 'claude-bridge example-config'; every key is documented here.
"""


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return {k: _plain(getattr(value, k)) for k in type(value).model_fields}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    if hasattr(value, "value"):  # enums
        return value.value
    return value


def _dump(key: str, value: Any) -> str:
    yaml = YAML()
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 100
    buf = io.StringIO()
    yaml.dump({key: value}, buf)
    return buf.getvalue()


def _emit(model: BaseModel, depth: int, out: list[str]) -> None:
    pad = "  " * depth
    for name, field in type(model).model_fields.items():
        if field.description:
            for line in textwrap.wrap(field.description, width=96 - len(pad)):
                out.append(f"{pad}# {line}")
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            out.append(f"{pad}{name}:")
            _emit(value, depth + 1, out)
        else:
            out.extend(pad + line for line in _dump(name, _plain(value)).rstrip("\n").split("\n"))
        if depth == 0:
            out.append("")


def render_example() -> str:
    out: list[str] = []
    _emit(Config(), 0, out)
    return HEADER + "\n" + "\n".join(out).rstrip("\n") + "\n"
