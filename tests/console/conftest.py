"""Fixtures of the console tests: the real ``console`` entry point (functions-framework, Flask test client) on
the suite's local stack, and a user signed in the way a person is (the e-mailed link, its button)."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

import pytest

from tests.functions.conftest import Fenv, fenv, media  # noqa: F401  (fixtures)

LINK = re.compile(r"(https?://\S+/signin/link\?t=[A-Za-z0-9_-]+)")


def csrf_of(html: str) -> str:
    """The CSRF token a rendered page carries (``<meta name="csrf-token">``)."""
    m = re.search(r'<meta name="csrf-token" content="([^"]*)"', html)
    assert m, "no csrf-token meta on the page"
    return m.group(1)


@dataclass
class Tenant:
    """A tenant with one device, made for a test."""

    tenant_id: str
    creds: dict


@pytest.fixture
def app(fenv):  # noqa: F811
    import functions_framework

    return functions_framework.create_app(target="console", source="functions/main.py", signature_type="http")


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def tenant(fenv) -> Tenant:  # noqa: F811
    creds = fenv.provision(f"t-{uuid.uuid4().hex[:10]}", recipients=["ops@example.com"])
    return Tenant(creds["tenant_id"], creds)


def signin_link_path(tenant_id: str, email: str) -> str:
    """A fresh one-time link for ``email`` (made as the CLI makes it), as a path with its query."""
    import datetime as dt

    from vigint.console import signin, users

    user = users.get_user(tenant_id, users.user_id_of(email))
    url = signin.make_link(user, ip=None, now=dt.datetime.now(dt.timezone.utc))
    return url[url.index("/signin/link"):]


def sign_in(client, tenant_id: str, email: str, role: str = "owner", site_ids=None):
    """Adds the user (if new) and signs ``client`` in through the link's page and its button; returns the
    overview's HTML."""
    from vigint.console import users

    users.put_user(tenant_id, email=email, role=role, site_ids=site_ids)
    path = signin_link_path(tenant_id, email)
    page = client.get(path)
    assert page.status_code == 200, page.text
    token = path.split("t=", 1)[1]
    used = client.post("/signin/link", data={"t": token, "csrf_token": csrf_of(page.text)})
    assert used.status_code == 303, used.text
    home = client.get("/")
    assert home.status_code == 200, home.text
    return home.text
