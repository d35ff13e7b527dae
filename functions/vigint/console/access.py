"""What a console user may see, and calls into the tenant API's handlers on their behalf.

The console reuses the tenant API's handlers (``vigint.tenant_api``) for reading and changing data, so the
console and the API give the same answers and keep the same invariants; ``api`` calls one with a principal made
from the user (``admin`` when the user's role may act, ``viewer`` otherwise). Site limits are the console's:
``cameras`` lists only the cameras of the user's sites, and ``camera`` and ``event`` answer the same 404 for a
camera or event outside them as for one that does not exist.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from vigint import pipeline
from vigint.api_keys import ApiPrincipal
from vigint.console import sites as sites_mod
from vigint.console.http import ConsoleRequest, HttpError, not_found
from vigint.console.users import ConsoleUser
from vigint.tenant_api import http as api_http


@dataclasses.dataclass(frozen=True)
class UserPrincipal(ApiPrincipal):
    """An ``ApiPrincipal`` for a console user; audit entries name the user (``actor``)."""

    user_id: str = ""

    @property
    def actor(self) -> dict:
        return {"kind": "user", "id": self.user_id, "name": self.name}


def principal(user: ConsoleUser, *, act: bool) -> UserPrincipal:
    """The tenant API principal of ``user``: ``admin`` when ``act`` (the page checked the action), else
    ``viewer``."""
    return UserPrincipal(key_id="console", tenant_id=user.tenant_id, name=user.email,
                         role="admin" if act else "viewer", user_id=user.user_id)


def api(req: ConsoleRequest, handler, *, params: dict | None = None, query: Any = None, body: Any = None,
        act: bool = False):
    """Calls a tenant API handler for ``req.user``; returns its answer (a pydantic model or dict).

    Raises:
        HttpError: the handler's 404 becomes the console's 404; another 4xx becomes an error page with the
            handler's message.
    """
    try:
        answer, _status = handler(api_http.Request(principal=principal(req.user, act=act), params=params or {},
                                                   query=query, body=body, now=req.now))
    except api_http.ApiError as exc:
        if exc.status == 404:
            raise not_found() from None
        raise HttpError(exc.status, exc.message) from None
    return answer


def attempt(req: ConsoleRequest, handler, **kwargs):
    """``api(req, handler, **kwargs)`` for a form's action: ``(answer, None)``, or ``(None, error)`` when the
    handler refuses (a 4xx other than 404) so the page can show the form again with ``error.message``.

    Raises:
        HttpError: 404 (missing, another tenant's or outside the user's sites), as ``api`` does.
    """
    try:
        return api(req, handler, **kwargs), None
    except HttpError as exc:
        if exc.status == 404:
            raise
        return None, exc


@dataclasses.dataclass(frozen=True)
class Camera:
    """A camera the user may see: its id, document, device document and site (None: no site)."""

    camera_id: str
    doc: dict
    device: dict
    site_id: str | None


def cameras(user: ConsoleUser) -> list[Camera]:
    """The tenant's cameras the user may see, by id."""
    tenant = pipeline.tenant_ref(user.tenant_id)
    devices = {s.id: s.to_dict() or {} for s in tenant.collection("devices").limit(1000).stream()}
    out = []
    for snap in tenant.collection("cameras").limit(1000).stream():
        doc = snap.to_dict() or {}
        device = devices.get(doc.get("device_id"), {})
        site = sites_mod.camera_site(doc, device)
        if user.sees_site(site):
            out.append(Camera(snap.id, doc, device, site))
    return sorted(out, key=lambda c: c.camera_id)


def camera(user: ConsoleUser, camera_id: str) -> Camera:
    """One camera the user may see.

    Raises:
        HttpError: 404 when it is missing or outside the user's sites.
    """
    tenant = pipeline.tenant_ref(user.tenant_id)
    snap = tenant.collection("cameras").document(camera_id).get()
    if not snap.exists:
        raise not_found()
    doc = snap.to_dict() or {}
    dsnap = tenant.collection("devices").document(doc.get("device_id") or "-").get() if doc.get("device_id") else None
    device = (dsnap.to_dict() or {}) if dsnap is not None and dsnap.exists else {}
    site = sites_mod.camera_site(doc, device)
    if not user.sees_site(site):
        raise not_found()
    return Camera(camera_id, doc, device, site)


def event(user: ConsoleUser, event_id: str) -> dict:
    """The document of an event whose camera the user may see.

    Raises:
        HttpError: 404 when it is missing or its camera is outside the user's sites.
    """
    snap = pipeline.event_ref(user.tenant_id, event_id).get()
    if not snap.exists:
        raise not_found()
    doc = snap.to_dict() or {}
    if user.site_ids is not None:
        camera(user, doc.get("camera_id") or "-")
    return doc
