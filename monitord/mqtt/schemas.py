"""The JSON Schemas of the feed (``monitord/schemas/mqtt-<kind>.json``), shipped in the package."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator

KINDS = ("status", "state", "alarms", "alarm-event", "interlock-event", "observation-event", "vitals", "infusion",
         "cmd-ack", "receipt")


@cache
def validator(kind: str) -> Draft202012Validator:
    # Imported on first use: jsonschema and its dependencies are ~6 MB the daemon needs only
    # when a central station sends something.
    from jsonschema import Draft202012Validator, FormatChecker

    text = resources.files("monitord").joinpath("schemas", f"mqtt-{kind}.json").read_text(encoding="utf-8")
    schema = json.loads(text)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=FormatChecker())


def errors(kind: str, payload: Any) -> list[str]:
    """Why ``payload`` is not a valid ``kind`` message (empty: valid)."""
    return [f"{'/'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}"
            for e in validator(kind).iter_errors(payload)]
