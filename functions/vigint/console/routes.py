"""The console's route table."""

from __future__ import annotations

from vigint.console.http import Page
from vigint.console.pages import alerts, auth, events, overview

PAGES: list[Page] = [
    Page("GET", "/signin", auth.signin_form, action=None),
    Page("POST", "/signin", auth.signin_request, action=None),
    Page("GET", "/signin/link", auth.link_confirm, action=None),
    Page("POST", "/signin/link", auth.link_use, action=None),
    Page("POST", "/signout", auth.signout),
    Page("GET", "/healthz", lambda req: ("ok\n", 200, {"Content-Type": "text/plain; charset=utf-8"}), action=None),
    Page("GET", "/", overview.overview),
    # --- part 1: events, the event page, alerts, the overview's tiles
    Page("GET", "/events", events.events_page),
    Page("GET", "/events/page", events.events_more),
    Page("GET", "/events/newer", events.events_newer),
    Page("GET", "/events/{event_id}", events.event_page, params=events.EVENT_PARAMS),
    Page("GET", "/events/{event_id}/state.json", events.event_state, params=events.EVENT_PARAMS),
    Page("GET", "/events/{event_id}/playlist.m3u8", events.event_playlist, params=events.EVENT_PARAMS),
    Page("GET", "/events/{event_id}/download/{n}", events.event_download, params=events.EVENT_PARAMS),
    Page("POST", "/events/{event_id}/ack", events.event_ack, action="acknowledge", params=events.EVENT_PARAMS),
    Page("POST", "/events/{event_id}/share", events.event_share, action="share", params=events.EVENT_PARAMS),
    Page("POST", "/events/{event_id}/links/revoke", events.links_revoke_all, action="share",
         params=events.EVENT_PARAMS),
    Page("POST", "/events/{event_id}/links/{link_id}/revoke", events.link_revoke, action="share",
         params=events.LINK_PARAMS),
    Page("POST", "/events/{event_id}/request-clip", events.request_clip, action="request_clip",
         params=events.EVENT_PARAMS),
    Page("GET", "/alerts", alerts.alerts_page),
    Page("GET", "/alerts/page", alerts.alerts_more),
    Page("POST", "/alerts/ack", alerts.alerts_ack, action="acknowledge"),

    # --- end of part 1
    # --- part 2: devices, cameras and their zones, sites

    # --- end of part 2
    # --- part 3: settings, users and roles, API keys, audit log, usage and cost

    # --- end of part 3
    # --- part 4: single sign-on (OpenID Connect)

    # --- end of part 4
]
