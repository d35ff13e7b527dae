"""Verdicts of an event: the one from the edge detections alone, and how a verdict is written.

A schema version 2 event has up to three verdicts in ``verdicts.{detections,first,full}`` (docs/contracts.md,
"Event lifecycle"): ``detections`` is made by ingest in the same write as each message it applies (so the
first alert waits for no other function and no Gemini call); ``first`` and ``full`` are Gemini's, made by
analyze. ``analysis`` is the verdict of the highest rank so far (full > first > detections).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

VEHICLES = frozenset({"car", "truck", "bus", "motorcycle", "bicycle"})
VERDICT_RANK = {"detections": 0, "first": 1, "full": 2}


def detections_verdict(event: Mapping[str, Any]) -> dict:
    """A verdict from the edge detections alone: person -> 2, vehicle -> 1, anything else -> 0.

    Args:
        event: the event document (``labels``, ``camera_id``, ``max_count``, ``top_score`` are read).

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


def lifecycle_detections_verdict(event: Mapping[str, Any]) -> dict:
    """The ``verdicts.detections`` record of a version 2 event's current state (without ``analyzed_at``)."""
    return {"status": "detections_only", "source": "detections", **detections_verdict(event),
            "verdict": "detections"}


def verdict_updates(event: Mapping[str, Any], which: str, analysis: dict, now: dt.datetime) -> dict:
    """The Firestore field updates that record verdict ``which`` on ``event`` (the stored document).

    ``verdicts.{which}``; ``analysis`` too unless a verdict of a higher rank is stored; ``timeline.first_verdict``
    if unset; ``status`` "analyzed" if it was unset or "ingested". Empty for a detections verdict equal to the
    stored one (no write: about one sustained write per second per document,
    https://cloud.google.com/firestore/docs/best-practices#high_read_write_and_delete_rates).

    Args:
        which: ``"detections"``, ``"first"`` or ``"full"``.
        analysis: the verdict record (without ``analyzed_at``, which is set to ``now``).
    """
    verdicts = event.get("verdicts") or {}
    old = verdicts.get(which) or {}
    if which == "detections" and {k: v for k, v in old.items() if k != "analyzed_at"} == analysis:
        return {}
    updates: dict = {f"verdicts.{which}": {**analysis, "analyzed_at": now}}
    if all(VERDICT_RANK[other] <= VERDICT_RANK[which] for other in verdicts if other in VERDICT_RANK
           and verdicts.get(other)):
        updates["analysis"] = {**analysis, "analyzed_at": now}
    if not (event.get("timeline") or {}).get("first_verdict"):
        updates["timeline.first_verdict"] = now
    if event.get("status") in (None, "ingested"):
        updates["status"] = "analyzed"
    return updates
