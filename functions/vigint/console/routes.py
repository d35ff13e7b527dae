"""The console's route table."""

from __future__ import annotations

from vigint.console.http import Page
from vigint.console.pages import auth, overview
from vigint.console.pages import audit_log, people, settings, usage  # part 3

PAGES: list[Page] = [
    Page("GET", "/signin", auth.signin_form, action=None),
    Page("POST", "/signin", auth.signin_request, action=None),
    Page("GET", "/signin/link", auth.link_confirm, action=None),
    Page("POST", "/signin/link", auth.link_use, action=None),
    Page("POST", "/signout", auth.signout),
    Page("GET", "/healthz", lambda req: ("ok\n", 200, {"Content-Type": "text/plain; charset=utf-8"}), action=None),
    Page("GET", "/", overview.overview),
    # --- part 1: events, the event page, alerts, the overview's tiles

    # --- end of part 1
    # --- part 2: devices, cameras and their zones, sites

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

    # --- end of part 4
]
