"""The words sent to Gemini, kept apart from the transport (as Frigate's ``genai/prompts.py`` does)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

SYSTEM_INSTRUCTION = (
    "You are the analyst of a video-security service. You watch a short clip from a fixed security camera "
    "and judge whether it shows something the site's owner must act on. Judge only what is visible. "
    "Threat levels: 0 = nothing of concern (normal activity), 1 = low (unusual but harmless), "
    "2 = medium (worth a look soon: loitering, trying doors, someone where they should not be), "
    "3 = high (act now: break-in, violence, fire, weapon). Answer in the requested JSON only: a short title "
    "(at most 8 words), a factual summary of 1-3 sentences, your confidence 0..1 and the notable objects."
)


HEALTH_INSTRUCTION = (
    "This event is a camera health report (the camera went offline, was tampered with, or came back), not a "
    "detection. Judge how urgently someone should check the camera."
)


def _fmt_time(value: Any) -> str:
    try:
        return value.strftime("%Y-%m-%d %H:%M:%S UTC")
    except AttributeError:
        return str(value)


def part_of_day(hour: int) -> str:
    """``night`` (22-5), ``morning`` (6-11), ``afternoon`` (12-17) or ``evening`` (18-21)."""
    if hour >= 22 or hour < 6:
        return "night"
    if hour < 12:
        return "morning"
    if hour < 18:
        return "afternoon"
    return "evening"


def local_time_words(t: Any, timezone: str | None) -> str | None:
    """``Sunday 07:00 (morning) in Europe/Paris`` for an aware datetime, or None without a zone/time."""
    if not timezone or not isinstance(t, dt.datetime):
        return None
    from zoneinfo import ZoneInfo

    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    local = t.astimezone(ZoneInfo(timezone))
    return f"{local:%A} {local:%H:%M} ({part_of_day(local.hour)}) in {timezone}"


MEDIA_WORDS = {
    "video": "Attached: the event clip and its snapshot.",
    "frames": "Attached: stills sampled from the event clip (at most one per second, in order), then its snapshot.",
    "snapshot": "Attached: the event snapshot only (no clip could be sent).",
}


FIRST_PASS_WORDS = ("The event is still going: you see its snapshot and its first seconds only. Judge what is "
                    "visible so far; a look at the whole clip follows when it ends.")


def event_prompt(event: Mapping[str, Any], normal_context: str = "", has_video: bool = True, *,
                 timezone: str | None = None, media: str | None = None, first_pass: bool = False) -> str:
    """The user prompt for one event.

    Args:
        event: the stored event document (docs/contracts.md event fields).
        normal_context: the tenant's description of what is normal at the site.
        has_video: False when only the snapshot is attached (ignored when ``media`` is given).
        timezone: the tenant's IANA time zone, to state the local time of day (None: UTC only).
        media: ``"video"``, ``"frames"`` or ``"snapshot"``: what is attached.
        first_pass: the event is still going (schema version 2 first pass: snapshot + first seconds).
    """
    counts = ", ".join(f"{k}: up to {v} at once" for k, v in (event.get("max_count") or {}).items()) or "none"
    lines = [f"Camera: {event.get('camera_id', 'unknown')}."]
    zones = [str(z) for z in event.get("zones") or []]
    if zones:
        lines.append(f"Zones entered: {', '.join(zones)}.")
    lines.append(f"Time: {_fmt_time(event.get('start_time'))} to {_fmt_time(event.get('end_time'))}.")
    local = local_time_words(event.get("start_time"), timezone)
    if local:
        lines.append(f"Local time at the site: {local}.")
    if event.get("kind") == "camera_health":
        lines.append(HEALTH_INSTRUCTION)
        lines.append(f"Reported condition: {', '.join(event.get('labels') or []) or 'unspecified'}.")
    else:
        lines.append(
            f"The on-site detector saw: {', '.join(event.get('labels') or []) or 'nothing it recognises'} "
            f"({counts}; best score {float(event.get('top_score') or 0):.2f})."
        )
    if normal_context.strip():
        lines.append(f"What is normal at this site, according to its owner: {normal_context.strip()}")
    lines.append(MEDIA_WORDS.get(media or ("video" if has_video else "snapshot"), MEDIA_WORDS["snapshot"]))
    if first_pass:
        lines.append(FIRST_PASS_WORDS)
    lines.append("Give your verdict.")
    return "\n".join(lines)
