"""``GET /openapi.json``: an OpenAPI 3.1 document built from the route table and the pydantic models.

Schemas come from pydantic (``models_json_schema``; JSON Schema 2020-12, which OpenAPI 3.1 uses as is):
request bodies and query strings in validation mode, answers in serialization mode. Query parameters are
the fields of a route's query model; path parameters carry their patterns.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic.json_schema import models_json_schema

from vigint.tenant_api import models as m

TITLE = "Vigint tenant API"
VERSION = "1.0.0"
_REF = "#/components/schemas/{model}"


def _strip_null(schema: dict) -> dict:
    """A query parameter cannot be JSON null: drop the ``null`` branch of ``anyOf``."""
    any_of = schema.get("anyOf")
    if not any_of:
        return schema
    rest = [s for s in any_of if s.get("type") != "null"]
    out = {k: v for k, v in schema.items() if k != "anyOf"}
    if len(rest) == 1:
        out.update(rest[0])
    else:
        out["anyOf"] = rest
    if out.get("default", 0) is None:
        out.pop("default")
    return out


def _error(description: str) -> dict:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": _REF.format(model="ErrorBody")}}}}


_cache: dict[int, dict] = {}


def _build(routes: list) -> dict:
    models: list[tuple[type, str]] = [(m.ErrorBody, "serialization")]
    for r in routes:
        if r.body is not None:
            models.append((r.body, "validation"))
        if r.response is not None:
            models.append((r.response, "serialization"))
    models = list(dict.fromkeys(models))
    keys, defs = models_json_schema(models, ref_template=_REF)
    schemas = defs.get("$defs", {})
    paths: dict[str, dict] = {}
    for r in routes:
        op_id = f"{r.method.lower()}_" + re.sub(r"[^a-z0-9]+", "_", r.path.lower()).strip("_")
        op: dict[str, Any] = {"operationId": op_id, "summary": r.summary, "tags": [r.tag]}
        params = [{"name": name, "in": "path", "required": True, "schema": {"type": "string", "pattern": pattern}}
                  for name, pattern in r.params.items()]
        if r.query is not None:
            qs = r.query.model_json_schema(mode="validation", ref_template=_REF)
            required = set(qs.get("required", []))
            for name, prop in qs.get("properties", {}).items():
                prop = _strip_null(dict(prop))
                desc = prop.pop("description", None)
                p = {"name": name, "in": "query", "required": name in required, "schema": prop}
                if desc:
                    p["description"] = desc
                params.append(p)
        if params:
            op["parameters"] = params
        if r.body is not None:
            op["requestBody"] = {"required": True, "content": {"application/json": {
                "schema": keys[(r.body, "validation")]}}}
        ok: dict[str, Any] = {"description": "success"}
        if r.response is not None:
            ok["content"] = {"application/json": {"schema": keys[(r.response, "serialization")]}}
        elif r.path == "/openapi.json":
            ok["content"] = {"application/json": {"schema": {"type": "object"}}}
        responses: dict[str, Any] = {str(r.status): ok}
        if r.query is not None or r.body is not None:
            responses["400"] = _error("bad query or body; `field` names the offending field")
        if r.role is not None:
            responses["401"] = _error("missing, unknown or revoked API key")
            responses["404"] = _error("no such object in the key's tenant")
            responses["503"] = _error("a backend is temporarily unavailable; retry")
            op["security"] = [{"bearerAuth": []}]
        else:
            op["security"] = []
        if r.role == "admin":
            responses["403"] = _error("the API key's role (viewer) may not do this")
        if r.body is not None:
            responses["409"] = _error("conflicts with an existing object")
            responses["413"] = _error("body larger than 64 KiB")
        elif r.method == "POST":
            responses["409"] = _error("the object's state does not allow this (e.g. device revoked)")
        op["responses"] = responses
        paths.setdefault(r.path, {})[r.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": TITLE, "version": VERSION,
                 "description": "Per-tenant API of Vigint. Authenticate with `Authorization: Bearer <API key>`; "
                                "viewer keys read, admin keys also write. Times are RFC 3339 (UTC in answers)."},
        "paths": paths,
        "components": {"schemas": schemas,
                       "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer",
                                                          "description": "API key `vgk_<id>.<secret>`"}}},
        "security": [{"bearerAuth": []}],
    }


def document(routes) -> dict:
    """The OpenAPI document of ``routes`` (a list of ``vigint.tenant_api.http.Route``), cached."""
    doc = _cache.get(id(routes))
    if doc is None:
        doc = _cache[id(routes)] = _build(routes)
    return doc
