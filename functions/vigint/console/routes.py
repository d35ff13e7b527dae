"""The console's route table."""

from __future__ import annotations

from vigint.console.http import Page
from vigint.console.pages import alerts, audit_log, auth, events, overview, people, settings, sites_admin, sso, usage
from vigint.console.pages import cameras as camera_pages
from vigint.console.pages import devices as device_pages

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
    Page("GET", "/devices", device_pages.list_devices, action="manage"),
    Page("POST", "/devices/enroll", device_pages.enroll, action="manage"),
    Page("GET", "/devices/{device_id}", device_pages.device_page, action="manage", params=device_pages.PARAMS),
    Page("GET", "/devices/{device_id}/commands", device_pages.commands_fragment, action="manage",
         params=device_pages.PARAMS),
    Page("POST", "/devices/{device_id}/commands", device_pages.send_command, action="manage",
         params=device_pages.PARAMS),
    Page("POST", "/devices/{device_id}/revoke", device_pages.revoke, action="manage", params=device_pages.PARAMS),
    Page("POST", "/devices/{device_id}/rotate-key", device_pages.rotate_key, action="manage",
         params=device_pages.PARAMS),
    Page("POST", "/devices/{device_id}/cameras", device_pages.add_camera, action="manage",
         params=device_pages.PARAMS),
    Page("GET", "/cameras/{camera_id}", camera_pages.camera_page, action="watch", params=camera_pages.PARAMS),
    Page("POST", "/cameras/{camera_id}", camera_pages.save_camera, action="manage", params=camera_pages.PARAMS),
    Page("GET", "/settings/sites", sites_admin.sites_page, action="manage"),
    Page("POST", "/settings/sites", sites_admin.create_site, action="manage"),
    Page("POST", "/settings/sites/assign/device", sites_admin.assign_device, action="manage"),
    Page("POST", "/settings/sites/assign/camera", sites_admin.assign_camera, action="manage"),
    Page("POST", "/settings/sites/{site_id}", sites_admin.update_site, action="manage", params=sites_admin.PARAMS),

    # --- end of part 2
    # --- part 3: settings, users and roles, API keys, audit log, usage and cost
    Page("GET", "/settings", settings.hub, action="manage"),
    Page("GET", "/settings/alerts", settings.alerts_form, action="manage"),
    Page("POST", "/settings/alerts", settings.alerts_save, action="manage"),
    Page("POST", "/settings/alerts/webhook", settings.webhook_save, action="manage"),
    Page("GET", "/settings/users", people.users_list, action="manage"),
    Page("POST", "/settings/users", people.invite, action="manage"),
    Page("GET", "/settings/users/{user_id}", people.user_page, action="manage", params={"user_id": people.USER_ID}),
    Page("POST", "/settings/users/{user_id}", people.user_update, action="manage", params={"user_id": people.USER_ID}),
    Page("POST", "/settings/users/{user_id}/disable", people.user_disable, action="manage",
         params={"user_id": people.USER_ID}),
    Page("POST", "/settings/users/{user_id}/enable", people.user_enable, action="manage",
         params={"user_id": people.USER_ID}),
    Page("POST", "/settings/users/{user_id}/invite", people.user_reinvite, action="manage",
         params={"user_id": people.USER_ID}),
    Page("GET", "/settings/api-keys", settings.api_keys, action="manage"),
    Page("POST", "/settings/api-keys", settings.api_key_create, action="manage"),
    Page("POST", "/settings/api-keys/{key_id}/revoke", settings.api_key_revoke, action="manage",
         params={"key_id": settings.KEY_ID}),
    Page("GET", "/settings/audit", audit_log.audit_page, action="manage"),
    Page("GET", "/settings/audit.csv", audit_log.audit_csv, action="manage"),
    Page("GET", "/settings/usage", usage.usage_page, action="manage"),

    # --- end of part 3
    # --- part 4: single sign-on (OpenID Connect)
    Page("GET", "/signin/sso", sso.start, action=None),
    Page("GET", "/signin/oidc/callback", sso.callback, action=None),
    Page("GET", "/settings/sso", sso.settings_page, action="manage"),
    Page("POST", "/settings/sso", sso.settings_save, action="manage"),

    # --- end of part 4
]
