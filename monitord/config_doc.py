"""The allowed range of every number in the configuration, from the models themselves, as the
Markdown table in ``docs/config.md`` (a test keeps the two equal)."""

from __future__ import annotations

import types
from collections.abc import Iterable, Iterator
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from monitord.config import Config


def _bounds(metadata: Iterable[Any]) -> str:
    lo = hi = ""
    for m in metadata:
        if isinstance(m, FieldInfo):
            inner = _bounds(m.metadata)
            if inner != "finite":
                return inner
            continue
        if getattr(m, "gt", None) is not None:
            lo = f"{m.gt} <"
        if getattr(m, "ge", None) is not None:
            lo = f"{m.ge} <="
        if getattr(m, "lt", None) is not None:
            hi = f"< {m.lt}"
        if getattr(m, "le", None) is not None:
            hi = f"<= {m.le}"
    if not lo and not hi:
        return "finite"
    return " ".join(part for part in (lo, "x", hi) if part)


def _walk(key: str, annotation: Any, metadata: list[Any]) -> Iterator[tuple[str, str, str]]:
    origin = get_origin(annotation)
    if origin is Annotated:
        base, *meta = get_args(annotation)
        yield from _walk(key, base, [*metadata, *meta])
    elif origin in (Union, types.UnionType):
        for arg in get_args(annotation):
            if arg is not type(None):
                yield from _walk(key, arg, metadata)
    elif origin in (list, tuple):
        for arg in dict.fromkeys(a for a in get_args(annotation) if a is not Ellipsis):
            yield from _walk(key + "[]", arg, [])
    elif origin is dict:
        yield from _walk(key + ".<name>", get_args(annotation)[1], [])
    elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield from numeric_ranges(annotation, key + ".")
    elif annotation in (int, float):
        yield key, "integer" if annotation is int else "number", _bounds(metadata)


def numeric_ranges(model: type[BaseModel] = Config, prefix: str = "") -> Iterator[tuple[str, str, str]]:
    """(key, type, allowed) for every number a configuration holds."""
    for name, field in model.model_fields.items():
        yield from _walk(prefix + name, field.annotation, list(field.metadata))


def ranges_markdown() -> str:
    rows = ["| key | type | allowed |", "|---|---|---|"]
    seen: set[str] = set()
    for key, kind, allowed in numeric_ranges():
        if key not in seen:
            seen.add(key)
            rows.append(f"| `{key}` | {kind} | {allowed} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(ranges_markdown(), end="")
