"""Device commands: the Firestore document, its wire form and the device's result (docs/contracts.md).

``tenants/{t}/devices/{d}/commands/{command_id}`` (Firestore auto id, 20 alphanumerics):

* ``type``: one of ``COMMAND_TYPES``; ``params``: ``{}``, or for ``request_clip``
  ``{"camera_id": slug, "start": RFC 3339 UTC, "end": RFC 3339 UTC}`` (strings ending in ``Z``);
* ``status``: ``"pending"`` (queued) -> ``"delivered"`` (handed over in a heartbeat answer) -> ``"done"`` or
  ``"failed"`` (the device's result); ``created_at``, ``created_by``, ``delivered_at``;
* once the device reported (``edge_api`` ``POST /v1/commands/{command_id}/result``): ``detail`` (str, at most
  ``MAX_DETAIL_CHARS``, or null), ``result`` (the device's result object as compact JSON text, at most
  ``MAX_RESULT_BYTES``, or null; text because Firestore cannot hold arrays of arrays or maps nested deeper
  than 20 levels), ``event_id`` (the event the command produced, e.g. the ``recording`` event of a
  ``request_clip``, or null) and ``completed_at``. The first result is kept.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from typing import Any

from google.cloud import firestore as fs

from vigint import clients

log = logging.getLogger(__name__)

COMMAND_TYPES = ("reload_config", "restart", "report_status", "request_clip")
COMMAND_ID_PATTERN = r"^[A-Za-z0-9]{1,64}$"
FINAL_STATUSES = ("done", "failed")
MAX_DETAIL_CHARS = 500
MAX_RESULT_BYTES = 64 * 1024


def rfc3339(t: Any) -> str | None:
    """``t`` (an aware datetime) as ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` in UTC; None for anything else."""
    if not isinstance(t, dt.datetime):
        return None
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def result_json(result: dict | None) -> str | None:
    """The compact JSON text a result is stored as (None stays None); its UTF-8 length is what
    ``MAX_RESULT_BYTES`` limits."""
    return None if result is None else json.dumps(result, separators=(",", ":"), ensure_ascii=False)


def stored_result(doc: dict) -> dict | None:
    """The result object of a command document (None when there is none or it is not a JSON object)."""
    raw = doc.get("result")
    if isinstance(raw, dict):
        return raw
    if not isinstance(raw, str):
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def params_of(doc: dict) -> dict:
    """The command's parameters (``{}`` for commands without any)."""
    params = doc.get("params")
    return dict(params) if isinstance(params, dict) else {}


def wire(command_id: str, doc: dict) -> dict:
    """How a device gets the command in its heartbeat answer: ``{"command_id", "type", "created_at",
    "params"}`` (``created_at`` RFC 3339 UTC)."""
    return {"command_id": command_id, "type": doc.get("type"), "created_at": rfc3339(doc.get("created_at")),
            "params": params_of(doc)}


def record_result(device_ref, command_id: str, *, status: str, detail: str | None, result: dict | None,
                  event_id: str | None, now: dt.datetime) -> str | None:
    """Stores the device's result on its command, once (in a transaction).

    Args:
        device_ref: the authenticated device's Firestore ``DocumentReference``.
        command_id: the command's id (any string; only this device's commands are found).
        status: ``"done"`` or ``"failed"``.
        detail: a short text from the device (at most ``MAX_DETAIL_CHARS``), or None.
        result: the device's result object (at most ``MAX_RESULT_BYTES`` as JSON), or None.
        event_id: the event the command produced, or None.
        now: completion time (UTC).

    Returns:
        The command's status after the call: ``status``, or the status of the result stored earlier (which
        is kept); None when the device has no such command.

    Raises:
        google.api_core.exceptions.GoogleAPICallError: Firestore failed.
    """
    if not re.match(COMMAND_ID_PATTERN, command_id or ""):
        return None
    ref = device_ref.collection("commands").document(command_id)

    @fs.transactional
    def txn(tx) -> str | None:
        snap = ref.get(transaction=tx)
        if not snap.exists:
            return None
        stored = str(snap.to_dict().get("status") or "")
        if stored in FINAL_STATUSES:
            return stored
        tx.update(ref, {"status": status, "detail": detail, "result": result_json(result), "event_id": event_id,
                        "completed_at": now})
        return status

    outcome = txn(clients.firestore().transaction(max_attempts=10))
    if outcome is not None:
        log.info("command %s of %s/%s: result %s", command_id, device_ref.parent.parent.id, device_ref.id, outcome)
    return outcome
