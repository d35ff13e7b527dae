"""Jinja2 rendering of the console's pages (``vigint/templates/console/``), always auto-escaped.

Filters: ``local_time(tz)`` shows a UTC datetime in an IANA time zone (``2026-12-02 14:05:09 CET``), ``ago``
as a short duration before ``now``. Globals: ``static(name)`` is the cache-busted URL of a static file.
"""

from __future__ import annotations

import datetime as dt
import functools
import zoneinfo
from pathlib import Path
from typing import Any

import jinja2

from vigint.render import short_duration

TEMPLATES = Path(__file__).resolve().parent.parent / "templates" / "console"


def local_time(t: dt.datetime | None, tz: str | None = None) -> str:
    """``t`` in the IANA zone ``tz`` (UTC when absent or unknown) as ``YYYY-MM-DD HH:MM:SS ZZZ``."""
    if t is None:
        return "—"
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    try:
        zone = zoneinfo.ZoneInfo(tz) if tz else dt.timezone.utc
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        zone = dt.timezone.utc
    local = t.astimezone(zone)
    return f"{local:%Y-%m-%d %H:%M:%S} {local.tzname()}"


def ago(t: dt.datetime | None, now: dt.datetime) -> str:
    """``4 min 12 s ago`` (``—`` for None)."""
    if t is None:
        return "—"
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    return f"{short_duration((now - t).total_seconds())} ago"


@functools.lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    from vigint.console.http import static_url

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["local_time"] = local_time
    env.filters["ago"] = ago
    env.globals["static"] = static_url
    return env


def render(name: str, **context: Any) -> str:
    """Renders ``templates/console/{name}``."""
    return _env().get_template(name).render(**context)
