"""Request plumbing of the tenant API: routes, authentication, validation, error answers.

Order of checks for one request: unknown path 404; known path but wrong method 405 (``Allow`` header);
missing/bad API key 401; role too low 403; body over ``MAX_BODY_BYTES`` 413; bad JSON (not UTF-8, nested deeper
than 32 levels, ``NaN``/``Infinity``: ``vigint.bodies.parse_json_object``), body or query 400 ``{"error", "field"}``;
then the handler. A path parameter that does not match its pattern (ids Firestore reserves, ``__.*__``, included)
is answered 404, exactly like a missing object (``MISSING``). Firestore/Storage outages answer 503 (the caller
may retry).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from google.api_core import exceptions as gexc
from pydantic import BaseModel, ValidationError

from vigint import api_keys, bodies
from vigint.api_keys import ApiPrincipal
from vigint.schema import matches

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
JsonResponse = tuple[dict, int, dict]
_UNAUTHORIZED: JsonResponse = ({"error": "unauthorized", "field": None}, 401,
                               {"WWW-Authenticate": 'Bearer realm="vigint"'})


class ApiError(Exception):
    """An error answer ``{"error": message, "field": field}`` with an HTTP status."""

    def __init__(self, status: int, message: str, field: str | None = None):
        super().__init__(message)
        self.status, self.message, self.field = status, message, field

    def response(self) -> JsonResponse:
        return {"error": self.message, "field": self.field}, self.status, {}


def not_found(what: str = "not found") -> ApiError:
    """The 404 every missing object and every other tenant's object gets."""
    return ApiError(404, what)


# Path parameter -> the 404 message its handlers give for a missing object, which a path id that does not match
# its pattern gets too (so a malformed id cannot be told from a missing one).
MISSING = {"event_id": "event not found", "device_id": "device not found", "camera_id": "camera not found",
           "command_id": "command not found", "key_id": "API key not found"}


@dataclass
class Request:
    """What a handler gets.

    Attributes:
        principal: the verified API key (tenant, user name, role).
        params: path parameters (already matched against their patterns).
        query: the validated query model (or None when the route has none).
        body: the validated body model (or None).
        now: the request time (UTC).
    """

    principal: ApiPrincipal
    params: dict[str, str]
    query: Any
    body: Any
    now: dt.datetime

    @property
    def tenant_id(self) -> str:
        return self.principal.tenant_id


@dataclass(frozen=True)
class Route:
    """One operation: used for dispatch and for the OpenAPI document.

    Attributes:
        method: HTTP method.
        path: template such as ``/v1/devices/{device_id}``.
        handler: ``f(Request) -> (answer, status)``, answer a pydantic model or dict.
        summary: one line for the document.
        tag: group in the document.
        role: ``"viewer"`` (any valid key), ``"admin"``, or None (no authentication).
        query: model of the query string.
        body: model of the JSON body.
        response: model of the success answer.
        status: success status.
        params: path parameter -> regular expression.
        audit: the audit action of a successful call with an API key (``vigint.audit``; e.g.
            ``"event.acknowledge"``), None for routes that write no entry or write their own. The console calls
            the handlers directly and writes its own, richer entries, so nothing is recorded twice.
    """

    method: str
    path: str
    handler: Callable[[Request], tuple[Any, int]]
    summary: str
    tag: str
    role: str | None = "viewer"
    query: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    params: dict[str, str] = field(default_factory=dict)
    audit: str | None = None

    def match(self, path: str) -> dict[str, str] | None:
        """Path parameters if ``path`` has this route's shape (segments, not patterns), else None."""
        return match_template(self.path, path)

    @property
    def literal_segments(self) -> int:
        return literal_segments(self.path)


def match_template(template: str, path: str) -> dict[str, str] | None:
    """``{name: segment}`` when ``path`` has the segments of ``template`` (``/v1/devices/{device_id}``: literal
    segments equal, each ``{name}`` one non-empty segment), else None. Patterns are checked by the caller."""
    want, got = template.strip("/").split("/"), path.strip("/").split("/")
    if len(want) != len(got):
        return None
    out = {}
    for w, g in zip(want, got):
        if w.startswith("{"):
            if not g:
                return None
            out[w[1:-1]] = g
        elif w != g:
            return None
    return out


def literal_segments(template: str) -> int:
    """How many segments of ``template`` are literal: of two templates that match a path, the one with more wins
    (``/v1/devices/enrollment-codes`` before ``/v1/devices/{device_id}``)."""
    return sum(1 for s in template.split("/") if s and not s.startswith("{"))


def _field(loc: tuple) -> str:
    return ".".join(str(p) for p in loc) or "body"


def validate(model: type[BaseModel], data: Any, where: str) -> BaseModel:
    """Validates ``data`` against ``model``.

    Raises:
        ApiError: 400 naming the first offending field (``where`` names the whole body/query).
    """
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors(include_input=False, include_url=False)[0]
        name = _field(err["loc"]) if err["loc"] else where
        raise ApiError(400, f"{name}: {err['msg']}", name) from None


def authenticate(headers: Mapping[str, str], now: dt.datetime) -> ApiPrincipal | None:
    """The principal of ``Authorization: Bearer <key>``, or None."""
    auth = headers.get("Authorization") or ""
    presented = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
    return api_keys.verify(presented, now=now)


def _audit(route: Route, principal: ApiPrincipal, params: dict[str, str], body: BaseModel | None,
           now: dt.datetime) -> None:
    """The audit entry of a successful API-key call of ``route``: target the route's last path id (else the
    tenant), details the other path ids and the names (never the values) of the body's fields."""
    from vigint import audit

    ids = list(params.items())
    fields = body.model_dump(exclude_unset=True) if body is not None else {}
    if not ids:  # a creation: the new object's id is in the body (device_id, camera_id), if anywhere
        ids = [(k, v) for k, v in fields.items() if k.endswith("_id") and isinstance(v, str)][:1]
    kind, target = (ids[-1][0].removesuffix("_id"), ids[-1][1]) if ids else ("tenant", principal.tenant_id)
    details = {name: value for name, value in ids[:-1]}
    if body is not None:
        details["fields"] = ",".join(sorted(fields))
    audit.record(principal.tenant_id, actor=audit.actor_of(principal), action=route.audit, target_kind=kind,
                 target_id=target, details=details, now=now)


def dispatch(routes: list[Route], *, method: str, path: str, headers: Mapping[str, str],
             query: Mapping[str, str], body: bytes, now: dt.datetime | None = None) -> JsonResponse:
    """Serves one request against ``routes`` (see the module docstring for the order of checks).

    Returns:
        ``(json_body, status, headers)``.
    """
    now = now or dt.datetime.now(dt.timezone.utc)
    path = path.rstrip("/") or "/"
    candidates = [(r, p) for r in routes if (p := r.match(path)) is not None]
    if not candidates:
        return {"error": "not found", "field": None}, 404, {}
    same_method = [(r, p) for r, p in candidates if r.method == method]
    if not same_method:
        allow = ", ".join(sorted({r.method for r, _ in candidates}))
        return {"error": "method not allowed", "field": None}, 405, {"Allow": allow}
    # Literal segments beat parameters (``/v1/devices/enrollment-codes`` before ``/v1/devices/{id}``).
    route, params = max(same_method, key=lambda rp: rp[0].literal_segments)
    try:
        principal = None
        if route.role is not None:
            principal = authenticate(headers, now)
            if principal is None:
                log.info("tenant_api: unauthorized %s %s", method, route.path)
                return _UNAUTHORIZED
            if route.role == "admin" and not principal.is_admin:
                return {"error": "forbidden: this API key is read-only", "field": None}, 403, {}
        for name, pattern in route.params.items():
            # The patterns keep out the ids Firestore reserves (``__.*__``, vigint.schema): answered as missing.
            if not matches(pattern, params.get(name, "")):
                raise not_found(MISSING.get(name, "not found"))
        if len(body) > MAX_BODY_BYTES:
            return {"error": f"request body larger than {MAX_BODY_BYTES} bytes", "field": "body"}, 413, {}
        q = validate(route.query, dict(query), "query") if route.query else None
        if route.query is None and query:
            name = next(iter(query))
            raise ApiError(400, f"{name}: unknown query parameter", name)
        b = None
        if route.body is not None:
            try:
                payload = bodies.parse_json_object(body or b"null", max_bytes=MAX_BODY_BYTES)
            except bodies.BodyError as exc:
                if exc.reason == "not_object":
                    raise ApiError(400, "body must be a JSON object", "body") from None
                raise ApiError(400, f"body is not valid JSON: {exc.message}", "body") from None
            b = validate(route.body, payload, "body")
        answer, status = route.handler(Request(principal=principal, params=params, query=q, body=b, now=now))
        if route.audit and principal is not None and status < 300:
            _audit(route, principal, params, b, now)
    except ApiError as exc:
        return exc.response()
    except (gexc.ServiceUnavailable, gexc.DeadlineExceeded, gexc.InternalServerError, gexc.Aborted) as exc:
        log.warning("tenant_api: %s %s: backend unavailable: %s", method, route.path, type(exc).__name__)
        return {"error": "temporarily unavailable, retry", "field": None}, 503, {"Retry-After": "5"}
    if isinstance(answer, BaseModel):
        answer = answer.model_dump(mode="json")
    return answer, status, {"Cache-Control": "no-store"}
