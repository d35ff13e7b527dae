"""Handlers: the key's own tenant (``/v1/tenant``) and its API keys (``/v1/api-keys``).

Tenant settings live on ``tenants/{t}`` (docs/contracts.md) plus the fields the alert and retention
functions read: ``quiet_hours`` (``{start: "HH:MM", end: "HH:MM", timezone: IANA}`` or absent),
``timezone`` (IANA) and ``retention_days`` (int days; absent/null: ``VIGINT_RETENTION_DAYS``). The alert
webhook (``alert.webhook``, holding a secret) is neither shown nor changed here.
"""

from __future__ import annotations

import logging

from google.api_core import exceptions as gexc

from vigint import api_keys, pipeline
from vigint.tenant_api import models as m
from vigint.tenant_api.http import ApiError, Request, not_found

log = logging.getLogger(__name__)


def _tenant_out(tenant_id: str, doc: dict) -> m.TenantOut:
    alert = dict(doc.get("alert") or {})
    qh = doc.get("quiet_hours")
    try:
        quiet = m.QuietHours.model_validate(qh) if qh else None
    except ValueError:  # a stored value this API did not write; show none rather than fail
        quiet = None
    tz = doc.get("timezone")
    retention = doc.get("retention_days")
    return m.TenantOut(
        tenant_id=tenant_id, name=str(doc.get("name") or ""), normal_context=str(doc.get("normal_context") or ""),
        alert=m.AlertSettings(
            threshold=min(3, max(0, int(alert.get("threshold", 1) or 0))),
            recipients=[str(r) for r in alert.get("recipients") or []],
            cooldown_seconds=max(0, int(alert.get("cooldown_seconds") or 0)),
            link_ttl_seconds=max(1, int(alert.get("link_ttl_seconds") or 7 * 24 * 3600)),
        ),
        quiet_hours=quiet, timezone=tz if isinstance(tz, str) and tz else None,
        retention_days=retention if isinstance(retention, int) and retention >= 1 else None,
        created_at=doc.get("created_at"),
    )


def _load(tenant_id: str) -> dict:
    snap = pipeline.tenant_ref(tenant_id).get()
    if not snap.exists:  # the key outlived its tenant
        raise not_found("tenant not found")
    return snap.to_dict()


def get_tenant(req: Request):
    """``GET /v1/tenant``."""
    return _tenant_out(req.tenant_id, _load(req.tenant_id)), 200


def patch_tenant(req: Request):
    """``PATCH /v1/tenant``: merges the fields present (dotted Firestore field paths)."""
    patch: m.TenantPatch = req.body
    given = patch.model_dump(exclude_unset=True, mode="json")
    updates: dict = {}
    for key in ("name", "normal_context", "retention_days", "quiet_hours", "timezone"):
        if key in given:
            updates[key] = given[key]
    for key, value in (given.get("alert") or {}).items():
        updates[f"alert.{key}"] = list(dict.fromkeys(value)) if key == "recipients" else value
    if updates:
        try:
            pipeline.tenant_ref(req.tenant_id).update(updates)
        except gexc.NotFound:
            raise not_found("tenant not found") from None
        log.info("tenant %s settings changed by key %s: %s", req.tenant_id, req.principal.key_id,
                 ", ".join(sorted(updates)))
    return _tenant_out(req.tenant_id, _load(req.tenant_id)), 200


def list_api_keys(req: Request):
    """``GET /v1/api-keys`` (admin)."""
    return m.ApiKeyList(api_keys=[m.ApiKeyOut(**r) for r in api_keys.list_keys(req.tenant_id)]), 200


def create_api_key(req: Request):
    """``POST /v1/api-keys`` (admin): the new key is in this answer only."""
    body: m.ApiKeyIn = req.body
    _load(req.tenant_id)
    try:
        key, record = api_keys.create_key(req.tenant_id, role=body.role, name=body.name,
                                          created_by=req.principal.name)
    except api_keys.ApiKeyError as exc:
        raise ApiError(400, str(exc), "name") from None
    return m.ApiKeyCreated(key=key, **record), 201


def revoke_api_key(req: Request):
    """``DELETE /v1/api-keys/{key_id}`` (admin): revokes; another tenant's key id is a 404."""
    record = api_keys.revoke_key(req.tenant_id, req.params["key_id"])
    if record is None:
        raise not_found("API key not found")
    return m.ApiKeyOut(**record), 200
