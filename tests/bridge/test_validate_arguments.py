"""The bridge checks tool arguments as `jsonschema.validate` does, checking each schema only once."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest

from taskservice.bridge import server

SCHEMAS: list[dict[str, Any]] = [
    {"type": "object"},
    {"type": "object", "properties": {"n": {"type": "integer", "minimum": 1}}, "required": ["n"]},
    {
        "type": "object",
        "properties": {"tags": {"type": "array", "items": {"enum": ["a", "b"]}}},
        "additionalProperties": False,
    },
]
INSTANCES: list[dict[str, Any]] = [{}, {"n": 1}, {"n": 0}, {"n": "1"}, {"tags": ["a", "c"]}, {"x": 1}]


def outcome(check: Any, instance: dict[str, Any], schema: dict[str, Any]) -> str | None:
    try:
        check(instance, schema)
    except jsonschema.ValidationError as exc:
        return f"{exc.message} at {list(exc.absolute_path)}"
    return None


@pytest.mark.parametrize("schema", SCHEMAS)
@pytest.mark.parametrize("instance", INSTANCES)
def test_the_same_errors_as_jsonschema_validate(schema: dict[str, Any], instance: dict[str, Any]) -> None:
    expected = outcome(lambda i, s: jsonschema.validate(instance=i, schema=s), instance, schema)
    assert outcome(server.validate_arguments, instance, schema) == expected


def test_each_schema_is_checked_once(monkeypatch: pytest.MonkeyPatch) -> None:
    server._validator.cache_clear()
    checked: list[object] = []
    original = jsonschema.Draft202012Validator.check_schema

    def counting(schema: Any, *args: Any, **kwargs: Any) -> None:
        checked.append(schema)
        original(schema, *args, **kwargs)

    monkeypatch.setattr(jsonschema.Draft202012Validator, "check_schema", staticmethod(counting))
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    for n in range(5):
        server.validate_arguments({"n": n}, dict(reversed(list(schema.items()))))  # equal, not identical
    with pytest.raises(jsonschema.ValidationError):
        server.validate_arguments({"n": "x"}, schema)
    assert len(checked) == 1


def test_a_bad_schema_is_refused_as_jsonschema_does() -> None:
    bad = {"type": "object", "properties": {"n": {"type": "no such type"}}}
    with pytest.raises(jsonschema.SchemaError):
        jsonschema.validate(instance={}, schema=bad)
    with pytest.raises(jsonschema.SchemaError):
        server.validate_arguments({}, bad)
