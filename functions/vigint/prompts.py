"""The words sent to Gemini, kept apart from the transport (as Frigate's ``genai/prompts.py`` does)."""

from __future__ import annotations

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


def _fmt_time(value: Any) -> str:
    try:
        return value.strftime("%Y-%m-%d %H:%M:%S UTC")
    except AttributeError:
        return str(value)


def event_prompt(event: Mapping[str, Any], normal_context: str = "", has_video: bool = True) -> str:
    """The user prompt for one event.

    Args:
        event: the stored event document (docs/contracts.md event fields).
        normal_context: the tenant's description of what is normal at the site.
        has_video: False when only the snapshot is attached (clip too large to send inline).
    """
    counts = ", ".join(f"{k}: up to {v} at once" for k, v in (event.get("max_count") or {}).items()) or "none"
    lines = [
        f"Camera: {event.get('camera_id', 'unknown')}.",
        f"Time: {_fmt_time(event.get('start_time'))} to {_fmt_time(event.get('end_time'))}.",
        f"The on-site detector saw: {', '.join(event.get('labels') or []) or 'nothing it recognises'} "
        f"({counts}; best score {float(event.get('top_score') or 0):.2f}).",
    ]
    if normal_context.strip():
        lines.append(f"What is normal at this site, according to its owner: {normal_context.strip()}")
    lines.append(
        "Attached: the event clip and its snapshot." if has_video
        else "Attached: the event snapshot only (the clip was too large to send)."
    )
    lines.append("Give your verdict.")
    return "\n".join(lines)
