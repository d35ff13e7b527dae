"""The sites overview (``/``): each site's cameras as tiles."""

from __future__ import annotations

from vigint.console import access, sites
from vigint.console.http import ConsoleRequest, Response


def overview(req: ConsoleRequest) -> Response:
    """``GET /``: the user's sites (those they may see) and their cameras."""
    cams = access.cameras(req.user)
    known = {s.site_id: s for s in sites.list_sites(req.user.tenant_id)}
    groups: dict = {}
    for cam in cams:
        groups.setdefault(cam.site_id, []).append(cam)
    shown = [(known.get(sid) or sites.Site(sid, sid, None) if sid else None, groups[sid])
             for sid in sorted(groups, key=lambda s: ((known.get(s).name if s in known else s or "~").lower()))]
    return req.page("overview.html", groups=shown)
