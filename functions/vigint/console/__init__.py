"""``console``: the operator console, a server-rendered web app people sign in to (issue 11).

Pages are rendered by Jinja2 (``templates/console/``, always escaped) and enhanced by htmx (vendored from npm,
``static/console/vendor/``); there is no inline script or style, so the CSP allows only our own files. People are
users of a tenant (``vigint.console.users``) who sign in with an e-mailed one-time link
(``vigint.console.signin``) or their organisation's OpenID Connect provider, and hold a server-side session
(``vigint.console.sessions``). Data are read and changed through the tenant API's handlers
(``vigint.console.access``), so the console and the API agree. ``vigint.console.http`` has the order of checks
of a request (session, CSRF, role, ids) and the security headers.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from vigint.console.http import MAX_FORM_BYTES, Response, dispatch

__all__ = ["handle", "MAX_FORM_BYTES"]


def handle(*, method: str, path: str, headers: Mapping[str, str], query: Mapping[str, str],
           form: Mapping[str, list[str]], remote_addr: str | None, now: dt.datetime | None = None) -> Response:
    """Serves one console request.

    Args:
        method: HTTP method.
        path: request path, e.g. ``/events``.
        headers: request headers (case-insensitive mapping).
        query: query parameters (first value of each name).
        form: form fields of a POST (every value of each name).
        remote_addr: the client's address (rate limits, audit).
        now: current time (UTC), for tests.

    Returns:
        ``(body, status, headers)``: body ``str`` or ``bytes``; a ``Set-Cookie`` header may be a list.
    """
    from vigint.console.routes import PAGES

    return dispatch(PAGES, method=method, path=path, headers=headers, query=query, form=form,
                    remote_addr=remote_addr, now=now)
