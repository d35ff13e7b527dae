"""``analyze``: ``events-ingested`` -> ``analysis`` on the event document -> ``events-analyzed``.

With Gemini configured (``VIGINT_GEMINI_BACKEND``: ``gemini`` with ``GEMINI_API_KEY``, or ``vertex``), Gemini
judges the clip (``vigint.gemini``), shown as video or as at most 1 fps of stills, whichever costs less within
``VIGINT_GEMINI_EVENT_TOKEN_BUDGET`` (``vigint.sampling``), with a prompt built from the event and the tenant
(``vigint.prompts``). Otherwise a verdict is derived from the edge detections so the alert still goes out:

* no Gemini configured: ``analysis.status = "detections_only"``;
* the tenant's monthly token cap (``tenants/{t}.gemini_monthly_token_cap``, default
  ``VIGINT_GEMINI_MONTHLY_TOKEN_CAP``) is used up: ``"detections_only"`` with ``skipped = "token_cap"``;
* ``camera_health`` events: a verdict from the reported condition (``labels``: ``camera_offline``,
  ``camera_tampered``, ``camera_online``... see ``HEALTH_CONDITIONS``), Gemini is not asked;
* ``recording`` events (clips the tenant asked for with the ``request_clip`` command): not analysed,
  ``analysis.status = "not_analyzed"`` with ``reason = "requested recording"`` (threat level 0); Gemini is not
  asked and no tokens are spent;
* Gemini failed for good (after tenacity's retries) or answered nonsense: ``"error"`` with ``error`` saying
  why; the alert says "analysis unavailable".

Tokens Gemini reports (``usage_metadata.total_token_count``) are added to ``tenants/{t}/usage/{YYYY-MM}``
(``gemini_tokens``) in the same batch as the analysis.

Idempotent: an event that already has an ``analysis`` is not sent to Gemini again; concurrent deliveries are
serialised by a claim on the event (the loser raises ``vigint.pipeline.InProgress`` and is redelivered); the
follow-on message is published once per event (flag ``published.analyzed``).

Schema version 2 events (docs/contracts.md "Event lifecycle"; ``handle_lifecycle``) get up to three verdicts,
each in ``verdicts.{detections,first,full}`` and published on ``events-analyzed`` with ``"verdict"``:

* ``detections``: made by ingest with each message it applies, and published by ingest (``vigint.verdicts``),
  so the first alert never waits for this function or for Gemini;
* ``first``, once per event while it is still going (claim ``first_pass``): Gemini on the latest snapshot and
  stills cut from the segments stored so far (MPEG-TS, PyAV);
* ``full``, once the event has ended (claim ``full_pass``): Gemini on the clip as for version 1 (or on all the
  segments when the edge could not send a clip).

``analysis`` is the latest verdict by rank (full > first > detections), written in one optimistic
read-modify-write with the verdict. Without Gemini a version 2 event keeps its detections verdict.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Mapping
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore as fs

from vigint import clients, config, gemini, pipeline, prompts, sampling, storage, usage
from vigint.gemini import MAX_INLINE_VIDEO_BYTES, GeminiAnalyzer, Media, MalformedVerdict
from vigint.verdicts import detections_verdict, verdict_updates

log = logging.getLogger(__name__)

STAGE = "analyze"
PUBLISHED_FLAG = "published.analyzed"
MAX_FRAME_SOURCE_BYTES = 64 * 1024 * 1024  # largest clip we download to cut stills from
ANALYSIS_LEASE_S = 300
# The analysis claim of an event that Gemini will not see (not configured, a health event, a recording): the
# claimed work is a few Firestore round trips, so a process killed holding the claim holds the event up for
# one publish's lease at most (the redelivery answers InProgress until then), not ANALYSIS_LEASE_S.
DETECTIONS_LEASE_S = pipeline.PUBLISH_LEASE_S
RECORDING_REASON = "requested recording"
# camera_health condition (label) -> (threat level, title words).
# Condition labels as the edge (vigint_edge/events/camera_health.py) and retention's stale-device check send them
# (docs/contracts.md, "Event message").
HEALTH_CONDITIONS = {
    "camera_tampered": (3, "Camera tampered with"),
    "camera_black": (2, "Camera view black"),
    "camera_offline": (2, "Camera offline"),
    "device_offline": (2, "Device stopped reporting"),
    "camera_online": (0, "Camera back online"),
}


def health_verdict(event: Mapping[str, Any]) -> dict:
    """The verdict of a ``camera_health`` event from its condition labels (unknown conditions -> level 2)."""
    camera = event.get("camera_id", "camera")
    labels = [str(label) for label in event.get("labels") or []]
    known = [HEALTH_CONDITIONS[label] for label in labels if label in HEALTH_CONDITIONS]
    level, words = max(known) if known else (2, "Camera health problem")
    condition = ", ".join(labels) or "unspecified"
    summary = (f"The edge device reported a camera health change on {camera}: {condition}. "
               "Check the camera's view, power and network.")
    return {"threat_level": level, "title": f"{words}: {camera}", "summary": summary}


def recording_analysis(event: Mapping[str, Any]) -> dict:
    """The ``analysis`` of a ``recording`` event: not analysed (``status: "not_analyzed"``, ``reason``
    ``RECORDING_REASON``, threat level 0), so listings and pages still have a title and a summary."""
    camera = event.get("camera_id", "camera")
    return {"status": "not_analyzed", "source": "none", "reason": RECORDING_REASON, "threat_level": 0,
            "title": f"Requested recording: {camera}",
            "summary": "A clip the tenant asked for (request_clip command); it was not analysed."}


def _parse(data: bytes) -> tuple[str, str] | None:
    try:
        msg = json.loads(data)
        tenant_id, event_id = msg["tenant_id"], msg["event_id"]
    except (ValueError, KeyError, TypeError):
        return None
    if not (isinstance(tenant_id, str) and isinstance(event_id, str)):
        return None
    return tenant_id, event_id


def _download(obj: str, max_bytes: int, notes: list[str], what: str) -> bytes | None:
    try:
        return storage.download(obj, max_bytes=max_bytes)
    except gexc.NotFound:
        notes.append(f"{what} not found in the bucket")
    except ValueError:
        notes.append(f"{what} too large to download")
    return None


def _media(event: Mapping[str, Any], analyzer: GeminiAnalyzer, budget: int) -> tuple[list[Media], str, int, list[str]]:
    """The media parts to send, what they are (``video``/``frames``/``snapshot``/``none``), their estimated
    tokens and notes. Missing or oversized media are noted; other GCS errors raise."""
    notes: list[str] = []
    clip_info = event.get("clip") or {}
    clip_obj, snap_obj = clip_info.get("object"), (event.get("snapshot") or {}).get("object")
    snapshot = _download(snap_obj, 10 * 1024 * 1024, notes, "snapshot") if snap_obj else None
    vertex = analyzer.backend == "vertex"
    clip: bytes | None = None
    if clip_obj and not vertex:
        clip = _download(clip_obj, MAX_FRAME_SOURCE_BYTES, notes, "clip")
    has_clip = bool(clip_obj) and (vertex or clip is not None)
    plan = sampling.plan(
        duration_s=clip_info.get("duration_s"), has_clip=has_clip, has_snapshot=snapshot is not None,
        budget_tokens=budget,
        video_allowed=vertex or (clip is not None and len(clip) <= MAX_INLINE_VIDEO_BYTES),
        has_audio=sampling.has_audio(clip) if clip is not None else False,  # the edge writes silent clips
    )
    parts: list[Media] = []
    mode = plan.mode
    if mode == "video":
        if vertex:
            parts.append(Media("video/mp4", uri=f"gs://{config.settings().bucket}/{clip_obj}"))
        else:
            parts.append(Media("video/mp4", data=clip))
    elif mode == "frames":
        if clip is None:
            clip = _download(clip_obj, MAX_FRAME_SOURCE_BYTES, notes, "clip")
        try:
            frames = sampling.extract_frames(clip, plan.frame_times) if clip is not None else []
        except Exception as exc:  # noqa: BLE001 - av.error.FFmpegError, ValueError: an undecodable clip
            notes.append(f"could not cut stills from the clip ({type(exc).__name__})")
            frames = []
        parts.extend(Media("image/jpeg", data=f) for f in frames)
        if not frames:
            mode = "snapshot"
    if snapshot is not None:
        parts.append(Media("image/jpeg", data=snapshot))
    if not parts:
        mode = "none"
    return parts, mode, plan.estimated_tokens, notes


def token_cap(tenant: Mapping[str, Any]) -> int:
    """The tenant's monthly Gemini token cap (``gemini_monthly_token_cap``, else the configured default)."""
    cap = tenant.get("gemini_monthly_token_cap")
    try:
        return int(cap) if cap is not None else config.settings().gemini_monthly_token_cap
    except (TypeError, ValueError):
        return config.settings().gemini_monthly_token_cap


def handle_ingested(*, data: bytes, attributes: Mapping[str, str] | None = None,
                    analyzer: GeminiAnalyzer | None = None, message_id: str | None = None) -> str:
    """Analyses one ingested event.

    Args:
        data: ``{"tenant_id", "event_id"}`` as JSON.
        attributes: message attributes (unused beyond logging).
        analyzer: the Gemini seam (default ``vigint.gemini.default_analyzer()`` from the settings; None when
            Gemini is not configured).
        message_id: Pub/Sub message id, for logs.

    Returns:
        ``"analyzed:<status>"``, ``"already_analyzed"`` or ``"dropped:<reason>"``; for a schema version 2
        event ``"verdicts:<names>"`` (see ``handle_lifecycle``).

    Raises:
        google.api_core.exceptions.GoogleAPICallError: transient Firestore/GCS/Pub/Sub failure.
        vigint.pipeline.InProgress: another delivery of this event is being analysed right now.
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
    if event.get("schema_version") == 2:
        return handle_lifecycle(ref, event, analyzer=analyzer)
    asks_gemini = event.get("kind") not in ("camera_health", "recording") and (
        analyzer or gemini.default_analyzer()) is not None
    state = "done" if event.get("analysis") else pipeline.claim(
        ref, "analysis", done_field="analysis", lease_s=ANALYSIS_LEASE_S if asks_gemini else DETECTIONS_LEASE_S)
    if state == "busy":
        raise pipeline.InProgress(f"{tenant_id}/{event_id} is being analysed by another delivery")
    if state == "done":
        log.info("analyze: %s/%s already analysed; not asking again", tenant_id, event_id)
        pipeline.publish_once(ref, PUBLISHED_FLAG, s.analyzed_topic, tenant_id, event_id)
        return "already_analyzed"

    try:
        analysis, tokens = _analyse(tenant_id, event_id, event, analyzer, s.gemini_event_token_budget)
    except Exception:
        try:  # let the redelivery start again at once instead of waiting for the lease
            ref.update({"claims.analysis": fs.DELETE_FIELD})
        except Exception:  # noqa: BLE001 - best effort; the lease expires anyway
            log.exception("analyze: %s/%s: could not release the claim", tenant_id, event_id)
        raise
    analysis["analyzed_at"] = fs.SERVER_TIMESTAMP
    batch = clients.firestore().batch()
    batch.update(ref, {"analysis": analysis, "status": "analyzed"})
    if tokens:
        usage.add(tenant_id, batch=batch, gemini_tokens=tokens)
    batch.commit()
    log.info("analyze: %s/%s -> %s, threat level %s (%d tokens)", tenant_id, event_id, analysis["status"],
             analysis["threat_level"], tokens)
    pipeline.publish_once(ref, PUBLISHED_FLAG, s.analyzed_topic, tenant_id, event_id)
    return f"analyzed:{analysis['status']}"


def _analyse(tenant_id: str, event_id: str, event: Mapping[str, Any], analyzer: GeminiAnalyzer | None,
             budget: int) -> tuple[dict, int]:
    """The ``analysis`` dict of one event and the Gemini tokens it cost."""
    tenant_snap = pipeline.tenant_ref(tenant_id).get()
    tenant = (tenant_snap.to_dict() or {}) if tenant_snap.exists else {}
    tokens = 0
    if event.get("kind") == "camera_health":
        analysis = {"status": "detections_only", "source": "detections", **health_verdict(event)}
    elif event.get("kind") == "recording":
        analysis = recording_analysis(event)
    else:
        fallback = detections_verdict(event)
        analyzer = analyzer or gemini.default_analyzer()
        cap, used = token_cap(tenant), usage.get(tenant_id)["gemini_tokens"]
        if analyzer is None:
            analysis = {"status": "detections_only", "source": "detections", **fallback}
        elif used >= cap:
            log.warning("analyze: %s/%s: tenant used %d of its %d monthly Gemini tokens; detections only",
                        tenant_id, event_id, used, cap)
            analysis = {"status": "detections_only", "source": "detections", "skipped": "token_cap",
                        **fallback,
                        "summary": f"AI analysis skipped: this month's AI budget is used up ({used} of {cap} "
                                   f"tokens). " + fallback["summary"]}
        else:
            analysis, tokens = _ask_gemini(analyzer, event, tenant, fallback, budget)
    return analysis, tokens


def _ask_gemini(analyzer: GeminiAnalyzer, event: Mapping[str, Any], tenant: Mapping[str, Any], fallback: dict,
                budget: int, media=None, first_pass: bool = False) -> tuple[dict, int]:
    """Gemini's verdict as an ``analysis`` dict and the tokens it cost; any failure becomes
    ``status: "error"`` with the fallback verdict. ``media`` is ``_media``'s answer (default: ``_media``)."""
    base = {"source": "gemini", "model": analyzer.model, "backend": analyzer.backend}
    parts, mode, estimate, notes = media if media is not None else _media(event, analyzer, budget)
    tokens = 0
    if not parts:
        error = "no media to analyse (" + ("; ".join(notes) or "the event has no clip or snapshot") + ")"
    else:
        prompt = prompts.event_prompt(event, str(tenant.get("normal_context") or ""),
                                      timezone=pipeline.tenant_timezone(tenant), media=mode, first_pass=first_pass)
        base.update({"media": mode, "estimated_media_tokens": estimate})
        try:
            answer = analyzer.analyze(prompt=prompt, system_instruction=prompts.SYSTEM_INSTRUCTION, media=parts)
            out = {**base, "status": "ok", **answer.verdict.model_dump(), "total_tokens": answer.total_tokens,
                   "attempts": answer.attempts}
            if notes:
                out["notes"] = notes
            return out, answer.total_tokens
        except MalformedVerdict as exc:
            tokens = exc.total_tokens
            error = f"Gemini answered with a malformed verdict: {exc}"
        except Exception as exc:  # noqa: BLE001 - API/network failure after the retries
            if isinstance(exc, gexc.GoogleAPICallError):
                raise  # Firestore/GCS inside the media step: transient, let Pub/Sub redeliver
            error = f"Gemini request failed: {type(exc).__name__}: {str(exc)[:300]}"
    log.warning("analyze: %s/%s: %s; using detections", event.get("tenant_id"), event.get("event_id"), error)
    return {
        **base, "status": "error", "source": "detections", "error": error, "total_tokens": tokens,
        "threat_level": fallback["threat_level"],
        "title": fallback["title"],
        "summary": "AI analysis unavailable. " + fallback["summary"],
    }, tokens


# ------------------------------------------------------------------------------------------ schema version 2

MAX_FIRST_PASS_SEGMENTS = 8  # the "first seconds": at most 8 segments of 2-4 s


def _segment_media(ref, event: Mapping[str, Any], budget: int,
                   limit: int | None) -> tuple[list[Media], str, int, list[str]]:
    """Stills cut from the event's stored segments (joined in index order, MPEG-TS), then the latest
    snapshot; as ``_media``. ``limit``: at most that many segments (the first ones)."""
    notes: list[str] = []
    snap_obj = (event.get("snapshot") or {}).get("object")
    snapshot = _download(snap_obj, 10 * 1024 * 1024, notes, "snapshot") if snap_obj else None
    query = ref.collection("segments").order_by("index")
    if limit:
        query = query.limit(limit)
    video, duration = b"", 0.0
    for seg in query.stream():
        d = seg.to_dict()
        if len(video) + int(d.get("bytes") or 0) > MAX_FRAME_SOURCE_BYTES:
            notes.append("later segments left out (too large to download)")
            break
        got = _download(str(d.get("object")), MAX_FRAME_SOURCE_BYTES, notes, f"segment {seg.id}")
        if got is None:
            break  # keep the stills in order: stop at the first missing segment
        video += got
        duration += float(d.get("duration_s") or 0.0)
    plan = sampling.plan(duration_s=duration, has_clip=bool(video), has_snapshot=snapshot is not None,
                         budget_tokens=budget, video_allowed=False)
    parts: list[Media] = []
    mode = "snapshot"
    if video:
        try:
            frames = sampling.extract_frames(video, plan.frame_times, container_format="mpegts")
        except Exception as exc:  # noqa: BLE001 - av.error.FFmpegError, ValueError: undecodable segments
            notes.append(f"could not cut stills from the segments ({type(exc).__name__})")
            frames = []
        parts.extend(Media("image/jpeg", data=f) for f in frames)
        mode = "frames" if frames else "snapshot"
    if snapshot is not None:
        parts.append(Media("image/jpeg", data=snapshot))
    if not parts:
        mode = "none"
    return parts, mode, plan.estimated_tokens, notes


def _write_verdict(ref, which: str, analysis: dict, tokens: int, tenant_id: str) -> bool:
    """Writes verdict ``which`` (``vigint.verdicts.verdict_updates``) in one optimistic read-modify-write, with
    the token usage. Returns False (nothing written) for a detections verdict equal to the stored one."""
    now = dt.datetime.now(dt.timezone.utc)

    def txn(tx) -> bool:
        updates = verdict_updates(tx.get(ref).to_dict() or {}, which, analysis, now)
        if not updates:
            return False
        tx.update(ref, updates)
        if tokens:
            usage.add(tenant_id, now=now, batch=tx, gemini_tokens=tokens)
        return True

    return pipeline.run_optimistic(txn, what=f"{ref.path}: verdict {which}")


def _gemini_pass(ref, which: str, event: Mapping[str, Any], analyzer: GeminiAnalyzer, tenant: Mapping[str, Any],
                 budget: int) -> str:
    """Claims and runs Gemini's ``first`` or ``full`` pass once per event; publishes its verdict.

    Returns:
        ``"done"`` (verdict written now or before; follow-on published), ``"busy"`` (another delivery runs it).
    """
    s = config.settings()
    tenant_id, event_id = str(event.get("tenant_id")), str(event.get("event_id"))
    flag = f"published.{which}"
    state = pipeline.claim(ref, f"{which}_pass", done_field=f"verdicts.{which}", lease_s=ANALYSIS_LEASE_S)
    if state == "busy":
        return "busy"
    if state == "mine":
        fallback = detections_verdict(event)
        cap, used = token_cap(tenant), usage.get(tenant_id)["gemini_tokens"]
        try:
            if used >= cap:
                analysis, tokens = {"status": "detections_only", "source": "detections", "skipped": "token_cap",
                                    **fallback, "summary": f"AI analysis skipped: this month's AI budget is used up "
                                                           f"({used} of {cap} tokens). " + fallback["summary"]}, 0
            else:
                if which == "first":
                    media = _segment_media(ref, event, budget, MAX_FIRST_PASS_SEGMENTS)
                elif (event.get("clip") or {}).get("object"):
                    media = _media(event, analyzer, budget)
                else:  # no clip (e.g. an interrupted event): every stored segment
                    media = _segment_media(ref, event, budget, None)
                analysis, tokens = _ask_gemini(analyzer, event, tenant, fallback, budget, media=media,
                                               first_pass=which == "first")
            analysis["verdict"] = which
            _write_verdict(ref, which, analysis, tokens, tenant_id)
        except Exception:
            try:  # let the redelivery start again at once instead of waiting for the lease
                ref.update({f"claims.{which}_pass": fs.DELETE_FIELD})
            except Exception:  # noqa: BLE001 - best effort; the lease expires anyway
                log.exception("analyze: %s/%s: could not release the %s claim", tenant_id, event_id, which)
            raise
        log.info("analyze: %s/%s %s pass -> %s, threat level %s (%d tokens)", tenant_id, event_id, which,
                 analysis["status"], analysis["threat_level"], tokens)
    pipeline.publish_once(ref, flag, s.analyzed_topic, tenant_id, event_id, extra={"verdict": which})
    return "done"


def handle_lifecycle(ref, event: Mapping[str, Any], *, analyzer: GeminiAnalyzer | None = None) -> str:
    """Gemini's verdicts of one schema version 2 event after an ``events-ingested`` message (module docstring).

    The detections verdict is not made here: ingest writes it with each message it applies and publishes it
    on ``events-analyzed`` itself, so the first alert never waits in this function's push subscription
    behind Gemini calls of other events (Pub/Sub paces push deliveries by how fast endpoints answer,
    https://cloud.google.com/pubsub/docs/push; the emulator pushes at most two at a time). With Gemini
    configured: the first pass (if the event is still going and has none) and the full pass (if the event
    has ended and has none). A pass another delivery is running is left to it.

    Returns:
        ``"verdicts:<names>"``: the Gemini verdicts made or confirmed now, e.g. ``"verdicts:first"``;
        ``"verdicts:none"`` without Gemini or with nothing to do.

    Raises:
        google.api_core.exceptions.GoogleAPICallError: transient Firestore/GCS/Pub/Sub failure.
        vigint.pipeline.InProgress: a verdict write lost to concurrent writers 10 times.
    """
    s = config.settings()
    tenant_id = str(event.get("tenant_id"))
    done: list[str] = []
    analyzer = analyzer or gemini.default_analyzer()
    if analyzer is None:
        return "verdicts:none"
    tenant_snap = pipeline.tenant_ref(tenant_id).get()
    tenant = (tenant_snap.to_dict() or {}) if tenant_snap.exists else {}
    budget = s.gemini_event_token_budget
    if not event.get("ended") and _gemini_pass(ref, "first", event, analyzer, tenant, budget) == "done":
        done.append("first")
    current = ref.get().to_dict() or {}
    if current.get("ended") and _gemini_pass(ref, "full", current, analyzer, tenant, budget) == "done":
        done.append("full")
    return "verdicts:" + (",".join(done) or "none")
