"""The console's route table."""

from __future__ import annotations

from vigint.console.pages import sso  # part 4 (kept apart from the other parts' imports)
from vigint.console.http import Page
from vigint.console.pages import auth, overview

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

    # --- end of part 3
    # --- part 4: single sign-on (OpenID Connect)
    Page("GET", "/signin/sso", sso.start, action=None),
    Page("GET", "/signin/oidc/callback", sso.callback, action=None),
    Page("GET", "/settings/sso", sso.settings_page, action="manage"),
    Page("POST", "/settings/sso", sso.settings_save, action="manage"),

    # --- end of part 4
]
