"""Jinja2 rendering of the alert e-mail and the video-link pages (templates in ``vigint/templates/``)."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2

THREAT_WORDS = {0: "No threat", 1: "Low threat", 2: "Medium threat", 3: "High threat"}


@functools.lru_cache(maxsize=2)
def _env(html: bool) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=html, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["utc_words"] = utc_words
    env.filters["threat_word"] = lambda level: THREAT_WORDS.get(int(level), f"Threat level {level}")
    return env


def render(name: str, **context: Any) -> str:
    """Renders ``templates/{name}``; ``.html`` templates are auto-escaped."""
    return _env(name.endswith(".html")).get_template(name).render(**context)


def utc_words(t: dt.datetime | None) -> str:
    """``Sunday 22 November 2026, 06:00:05 UTC`` (the time converted to UTC)."""
    if t is None:
        return "unknown time"
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    t = t.astimezone(dt.timezone.utc)
    return f"{t:%A} {t.day} {t:%B %Y}, {t:%H:%M:%S} UTC"


def duration_words(seconds: float) -> str:
    """``7 days``, ``1 day and 2 hours``, ``45 minutes``: the largest two units, rounded down."""
    seconds = max(0, int(seconds))
    units = [("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)]
    parts = []
    for name, size in units:
        n, seconds = divmod(seconds, size)
        if n:
            parts.append(f"{n} {name}{'s' if n != 1 else ''}")
        if len(parts) == 2:
            break
    return " and ".join(parts) or "0 seconds"


def short_duration(seconds: float) -> str:
    """``4 min 12 s``, ``12 s``, ``1 h 3 min``, ``2 d 5 h``: the largest two units, rounded down."""
    seconds = max(0, int(seconds))
    parts = []
    for name, size in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        n, seconds = divmod(seconds, size)
        if n:
            parts.append(f"{n} {name}")
        if len(parts) == 2:
            break
    return " ".join(parts) or "0 s"


def local_and_utc_words(t: dt.datetime | None, timezone: str | None) -> str:
    """``Sunday 22 November 2026, 07:00:05 CET (06:00:05 UTC)`` in the IANA ``timezone``; with no zone,
    ``utc_words(t)``."""
    if t is None:
        return "unknown time"
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    if not timezone:
        return utc_words(t)
    from zoneinfo import ZoneInfo

    local = t.astimezone(ZoneInfo(timezone))
    utc = t.astimezone(dt.timezone.utc)
    utc_part = f"{utc:%H:%M:%S} UTC" if utc.date() == local.date() else f"{utc.day} {utc:%B}, {utc:%H:%M:%S} UTC"
    return f"{local:%A} {local.day} {local:%B %Y}, {local:%H:%M:%S} {local.tzname()} ({utc_part})"


_PROBLEM_WORDS = {"missing": "not stored", "size": "another size", "md5": "other bytes: MD5 differs"}


def integrity_words(event: Mapping) -> str:
    """One sentence on an event whose stored objects differ from what its messages claim (ingest's
    ``integrity``, status ``mismatch``), e.g. ``"2 stored files differ from what the device recorded:
    clip.mp4 (other bytes: MD5 differs), snapshot.jpg (not stored)"``; "" when every object matched or
    nothing was checked. The alert e-mail and the link page show it."""
    integrity = event.get("integrity") or {}
    if integrity.get("status") != "mismatch":
        return ""
    objects = [o for o in integrity.get("objects") or [] if isinstance(o, Mapping)]
    count = int(integrity.get("mismatches") or len(objects))
    named = ", ".join(f"{str(o.get('object', '')).rsplit('/events/', 1)[-1].split('/', 1)[-1]} "
                      f"({_PROBLEM_WORDS.get(o.get('problem'), o.get('problem'))})" for o in objects[:5])
    more = f" and {count - 5} more" if count > 5 else ""
    return (f"{count} stored file{'s' if count != 1 else ''} differ{'s' if count == 1 else ''} from what the "
            f"device recorded: {named}{more}")
