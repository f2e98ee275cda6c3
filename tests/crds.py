"""CRD schemas as the API server applies them, for validating objects in tests."""

from __future__ import annotations

from typing import Any


def closed(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with unknown fields rejected, as the API server's strict field validation
    does for a structural CRD schema; fields it preserves on purpose stay open."""
    schema = dict(schema)
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        schema["additionalProperties"] = False
    if "properties" in schema:
        schema["properties"] = {k: closed(v) for k, v in schema["properties"].items()}
    if isinstance(schema.get("items"), dict):
        schema["items"] = closed(schema["items"])
    if isinstance(schema.get("additionalProperties"), dict):
        schema["additionalProperties"] = closed(schema["additionalProperties"])
    for keyword in ("anyOf", "allOf", "oneOf"):
        if keyword in schema:
            schema[keyword] = [closed(s) for s in schema[keyword]]
    return schema
