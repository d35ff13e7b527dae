"""``analyze``: ``events-ingested`` -> ``analysis`` on the event document -> ``events-analyzed``.

With ``GEMINI_API_KEY`` set, Gemini judges the clip (``vigint.gemini``); without it, or when Gemini fails or
answers nonsense, a verdict is derived from the edge detections so the alert still goes out (marked as such):

* no key: ``analysis.status = "detections_only"``;
* Gemini failed or malformed: ``analysis.status = "error"`` with ``error`` saying why.

Idempotent: an event that already has an ``analysis`` is not sent to Gemini again; the follow-on message is
published once per event (flag ``published.analyzed``), again only if an earlier attempt crashed before it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore as fs

from vigint import clients, config, pipeline, prompts, storage
from vigint.gemini import MAX_INLINE_VIDEO_BYTES, GeminiAnalyzer, MalformedVerdict

log = logging.getLogger(__name__)

STAGE = "analyze"
PUBLISHED_FLAG = "published.analyzed"
VEHICLES = frozenset({"car", "truck", "bus", "motorcycle", "bicycle"})


def detections_verdict(event: Mapping[str, Any]) -> dict:
    """A verdict from the edge detections alone: person -> 2, vehicle -> 1, anything else -> 0.

    Returns:
        ``{"threat_level", "title", "summary"}``.
    """
    labels = [str(label) for label in event.get("labels") or []]
    camera = event.get("camera_id", "camera")
    if "person" in labels:
        level, what = 2, "Person"
    elif any(label in VEHICLES for label in labels):
        level, what = 1, next(label for label in labels if label in VEHICLES).capitalize()
    else:
        level, what = 0, (labels[0].capitalize() if labels else "Activity")
    seen = ", ".join(f"{k} (up to {v})" for k, v in (event.get("max_count") or {}).items()) or ", ".join(labels)
    summary = (
        f"The camera's detector saw: {seen or 'no known objects'} "
        f"(best score {float(event.get('top_score') or 0):.2f}). "
        "No AI analysis of the video ran; this verdict comes from the on-site detections only."
    )
    return {"threat_level": level, "title": f"{what} detected on {camera}", "summary": summary}


def _parse(data: bytes) -> tuple[str, str] | None:
    try:
        msg = json.loads(data)
        tenant_id, event_id = msg["tenant_id"], msg["event_id"]
    except (ValueError, KeyError, TypeError):
        return None
    if not (isinstance(tenant_id, str) and isinstance(event_id, str)):
        return None
    return tenant_id, event_id


def _media(event: Mapping[str, Any]) -> tuple[bytes | None, bytes | None, list[str]]:
    """Downloads clip and snapshot; missing or oversized media are noted, other GCS errors raise."""
    notes: list[str] = []
    clip = snapshot = None
    clip_obj = (event.get("clip") or {}).get("object")
    snap_obj = (event.get("snapshot") or {}).get("object")
    if clip_obj:
        try:
            clip = storage.download(clip_obj, max_bytes=MAX_INLINE_VIDEO_BYTES)
        except gexc.NotFound:
            notes.append("clip not found in the bucket")
        except ValueError:
            notes.append("clip too large to send inline; snapshot only")
    if snap_obj:
        try:
            snapshot = storage.download(snap_obj, max_bytes=10 * 1024 * 1024)
        except (gexc.NotFound, ValueError):
            notes.append("snapshot not available")
    return clip, snapshot, notes


def handle_ingested(*, data: bytes, attributes: Mapping[str, str] | None = None,
                    analyzer: GeminiAnalyzer | None = None, message_id: str | None = None) -> str:
    """Analyses one ingested event.

    Args:
        data: ``{"tenant_id", "event_id"}`` as JSON.
        attributes: message attributes (unused beyond logging).
        analyzer: the Gemini seam (default ``clients.gemini()``, built from ``GEMINI_API_KEY``/``VIGINT_GEMINI_MODEL``/
            ``GOOGLE_GEMINI_BASE_URL``; not used when no key is configured).
        message_id: Pub/Sub message id, for logs.

    Returns:
        ``"analyzed:<status>"``, ``"already_analyzed"`` or ``"dropped:<reason>"``.

    Raises:
        google.api_core.exceptions.GoogleAPICallError: transient Firestore/GCS/Pub/Sub failure.
    """
    parsed = _parse(data)
    if parsed is None:
        pipeline.count_drop(STAGE, "invalid_message", message=message_id or "")
        return "dropped:invalid_message"
    tenant_id, event_id = parsed
    s = config.settings()
    ref = pipeline.event_ref(tenant_id, event_id)
    snap = ref.get()
    if not snap.exists:
        pipeline.count_drop(STAGE, "unknown_event", tenant=tenant_id, event=event_id)
        return "dropped:unknown_event"
    event = snap.to_dict()
    if event.get("analysis"):
        log.info("analyze: %s/%s already analysed; not asking again", tenant_id, event_id)
        pipeline.publish_once(ref, PUBLISHED_FLAG, s.analyzed_topic, tenant_id, event_id)
        return "already_analyzed"

    fallback = detections_verdict(event)
    analyzer = analyzer or clients.gemini()
    if analyzer is None:
        analysis = {"status": "detections_only", "source": "detections", **fallback}
    else:
        tenant = pipeline.tenant_ref(tenant_id).get()
        normal_context = (tenant.to_dict() or {}).get("normal_context", "") if tenant.exists else ""
        clip, snapshot, notes = _media(event)
        analysis = _ask_gemini(analyzer, event, normal_context, clip, snapshot, notes, fallback)
    analysis["analyzed_at"] = fs.SERVER_TIMESTAMP
    ref.update({"analysis": analysis, "status": "analyzed"})
    log.info("analyze: %s/%s -> %s, threat level %s", tenant_id, event_id, analysis["status"], analysis["threat_level"])
    pipeline.publish_once(ref, PUBLISHED_FLAG, s.analyzed_topic, tenant_id, event_id)
    return f"analyzed:{analysis['status']}"


def _ask_gemini(analyzer: GeminiAnalyzer, event: Mapping[str, Any], normal_context: str, clip: bytes | None,
                snapshot: bytes | None, notes: list[str], fallback: dict) -> dict:
    """Gemini's verdict as an ``analysis`` dict; any failure becomes ``status: "error"`` with the fallback."""
    base = {"source": "gemini", "model": analyzer.model}
    if clip is None and snapshot is None:
        error = "no media to analyse (" + "; ".join(notes) + ")"
    else:
        prompt = prompts.event_prompt(event, normal_context, has_video=clip is not None)
        try:
            verdict = analyzer.analyze(prompt=prompt, system_instruction=prompts.SYSTEM_INSTRUCTION,
                                       clip=clip, snapshot=snapshot)
            out = {**base, "status": "ok", **verdict.model_dump()}
            if notes:
                out["notes"] = notes
            return out
        except MalformedVerdict as exc:
            error = f"Gemini answered with a malformed verdict: {exc}"
        except Exception as exc:  # noqa: BLE001 - API/network failure after the client's own retries
            error = f"Gemini request failed: {type(exc).__name__}: {str(exc)[:300]}"
    log.warning("analyze: %s/%s: %s; using detections", event.get("tenant_id"), event.get("event_id"), error)
    return {
        **base, "status": "error", "source": "detections", "error": error,
        "threat_level": fallback["threat_level"],
        "title": fallback["title"],
        "summary": "AI analysis unavailable. " + fallback["summary"],
    }
