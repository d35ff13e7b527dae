"""Sites: ``tenants/{t}/sites/{site_id}`` ``{"name", "time_zone" (IANA), "created_at"}``.

A site groups devices (``devices/{d}.site_id``) and so their cameras; a camera may name its own ``site_id``
(a camera across the road, say), which wins. Cameras of no site belong to the tenant's implicit "no site" group,
which only users of every site see. Times on a site's pages are shown in its time zone (the tenant's, then UTC,
when it has none).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import zoneinfo

from vigint import pipeline

SITE_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


class SiteError(ValueError):
    """A bad site id, name or time zone; the message names it."""


@dataclasses.dataclass(frozen=True)
class Site:
    site_id: str
    name: str
    time_zone: str | None


def sites_col(tenant_id: str):
    return pipeline.tenant_ref(tenant_id).collection("sites")


def list_sites(tenant_id: str) -> list[Site]:
    """Every site of the tenant, by name."""
    out = [Site(s.id, (d := s.to_dict() or {}).get("name") or s.id, d.get("time_zone"))
           for s in sites_col(tenant_id).limit(1000).stream()]
    return sorted(out, key=lambda s: (s.name.lower(), s.site_id))


def put_site(tenant_id: str, site_id: str, *, name: str, time_zone: str | None,
             now: dt.datetime | None = None) -> Site:
    """Creates or changes a site.

    Raises:
        SiteError: bad id, name or time zone.
    """
    if not SITE_ID.match(site_id or "") or (site_id.startswith("__") and site_id.endswith("__")):
        raise SiteError("site_id: lower-case letters, digits and '-', 1 to 63 characters")
    name = (name or "").strip()
    if not 1 <= len(name) <= 100:
        raise SiteError("name: 1 to 100 characters")
    if time_zone:
        try:
            zoneinfo.ZoneInfo(time_zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise SiteError("time_zone: not an IANA time zone") from None
    now = now or dt.datetime.now(dt.timezone.utc)
    sites_col(tenant_id).document(site_id).set({"name": name, "time_zone": time_zone or None, "updated_at": now},
                                               merge=True)
    return Site(site_id, name, time_zone or None)


def camera_site(camera: dict, device: dict | None) -> str | None:
    """The site of a camera document: its own ``site_id``, else its device's, else None."""
    return camera.get("site_id") or (device or {}).get("site_id") or None
