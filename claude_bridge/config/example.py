"""``config.example.yaml``, generated from the config models' field descriptions."""

from __future__ import annotations

import io
import textwrap
import types
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from ruamel.yaml import YAML

from claude_bridge.config.root import Config

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
            if entry := _entry_model(field):
                _emit_entry(entry, pad, out)
        if depth == 0:
            out.append("")


def _entry_model(field: FieldInfo) -> type[BaseModel] | None:
    """The model of a mapping's values that may also be given in full, as ``hooks.tokens``'."""
    if get_origin(field.annotation) is not dict:
        return None
    value = get_args(field.annotation)[1]
    options = get_args(value) if get_origin(value) in (Union, types.UnionType) else (value,)
    return next((t for t in options if isinstance(t, type) and issubclass(t, BaseModel)), None)


def _emit_entry(model: type[BaseModel], pad: str, out: list[str]) -> None:
    """A commented-out entry with every key of ``model`` documented."""
    out.append(f"{pad}# An entry in full, e.g. (the short form is name: <secret>):")
    out.append(f"{pad}#   name:")
    for name, field in model.model_fields.items():
        for line in textwrap.wrap(field.description or "", width=92 - len(pad)):
            out.append(f"{pad}#     # {line}")
        default = (
            "<secret>"
            if field.is_required()
            else _plain(field.get_default(call_default_factory=True))
        )
        out.append(f"{pad}#     " + _dump(name, default).strip().replace("\n", f"\n{pad}#     "))


def render_example() -> str:
    out: list[str] = []
    _emit(Config(), 0, out)
    return HEADER + "\n" + "\n".join(out).rstrip("\n") + "\n"
