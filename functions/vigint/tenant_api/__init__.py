"""``tenant_api``: the HTTPS API tenants' users (and their tools) call with per-user API keys.

Resources (all JSON; ``GET /openapi.json`` describes every route, parameter, body and answer):
``/v1/tenant``, ``/v1/api-keys``, ``/v1/devices`` (+ enrollment codes, revoke, rotate-key, commands
and their results),
``/v1/cameras`` (with zones), ``/v1/events``, ``/v1/alerts`` (+ ack, unacknowledged-count), an event's
video links ``/v1/events/{id}/links`` (+ revoke all) and ``/v1/links/{id}/revoke``,
``/v1/analytics/counts``, ``/v1/usage``. Authentication: ``Authorization: Bearer <API key>``
(``vigint.api_keys``); ``viewer`` keys read, ``admin`` keys also write. A key sees only its own tenant;
another tenant's object is answered exactly like a missing one (404).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from vigint.tenant_api.http import MAX_BODY_BYTES, JsonResponse, dispatch

__all__ = ["handle", "MAX_BODY_BYTES"]


def handle(*, method: str, path: str, headers: Mapping[str, str], query: Mapping[str, str], body: bytes,
           now: dt.datetime | None = None) -> JsonResponse:
    """Serves one tenant API request.

    Args:
        method: HTTP method.
        path: request path, e.g. ``/v1/events``.
        headers: request headers (case-insensitive mapping, e.g. werkzeug's).
        query: query parameters (first value of each name).
        body: raw request body (at most ``MAX_BODY_BYTES`` is accepted: 413 beyond).
        now: current time (UTC), for tests.

    Returns:
        ``(json_body, status, headers)``, which Flask turns into a JSON response.
    """
    from vigint.tenant_api.routes import ROUTES

    return dispatch(ROUTES, method=method, path=path, headers=headers, query=query, body=body, now=now)
