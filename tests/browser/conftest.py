"""Browser fixtures of the console tests: Debian's Chromium driven by Playwright against the console process of
the suite's local stack (``stack.ports["console"]``), a sign-in the way a person does it (the link, its button),
an axe-core check (vendored from npm, ``tests/browser/vendor/axe.min.js``) and screenshots at desktop and phone
widths into ``.local/screenshots/`` (looked at by a person; not compared by the tests).

Every test here is ``slow``: each one starts a browser."""

from __future__ import annotations

import contextlib
import shutil
import uuid
from pathlib import Path

import pytest

from tests.functions.conftest import Fenv, fenv, media  # noqa: F401  (fixtures)

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
AXE = Path(__file__).resolve().parent / "vendor" / "axe.min.js"
SHOTS = Path(__file__).resolve().parents[2] / ".local" / "screenshots"
DESKTOP = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def chromium():
    """One headless Chromium for the module's tests, closed at the module's end: Playwright's sync API cannot
    run twice at once in one process, and other tests (tests/e2e) start their own."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def console_url(stack) -> str:
    return f"http://127.0.0.1:{stack.ports['console']}"


@pytest.fixture
def new_page(chromium):
    """``new_page(**context_options)``: a page in a fresh browser context (own cookies), closed after the test.
    axe needs ``bypass_csp=True`` to inject its script (the console's CSP forbids injected scripts)."""
    contexts = []

    def make(**options):
        ctx = chromium.new_context(viewport=DESKTOP, **options)
        contexts.append(ctx)
        return ctx.new_page()

    yield make
    for ctx in contexts:
        with contextlib.suppress(Exception):
            ctx.close()


@pytest.fixture
def tenant_id(fenv) -> str:  # noqa: F811
    """A fresh tenant with one device ``nuc-1``."""
    creds = fenv.provision(f"t-{uuid.uuid4().hex[:10]}", recipients=["ops@example.com"])
    return creds["tenant_id"]


def sign_in(page, console_url: str, tenant_id: str, email: str, role: str = "owner", site_ids=None) -> None:
    """Adds the user (if new), opens a fresh one-time link and presses its button; the page ends on the sites
    overview."""
    import datetime as dt

    from vigint.console import signin, users

    user = users.put_user(tenant_id, email=email, role=role, site_ids=site_ids)
    url = signin.make_link(user, ip=None, now=dt.datetime.now(dt.timezone.utc))
    page.goto(console_url + url[url.index("/signin/link"):])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(console_url + "/")


def axe_violations(page, impacts=("serious", "critical")) -> list[dict]:
    """axe-core's violations of the current page with one of ``impacts`` (the page's context must have been made
    with ``bypass_csp=True``): ``[{"id", "impact", "help", "nodes": [target, ...]}]``."""
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [{"id": v["id"], "impact": v["impact"], "help": v["help"],
             "nodes": [n["target"] for n in v["nodes"]][:5]}
            for v in result["violations"] if v["impact"] in impacts]


def screenshots(page, name: str) -> list[Path]:
    """Full-page screenshots of the current page at desktop and phone widths: ``.local/screenshots/{name}-desktop.png``
    and ``-phone.png``; the viewport is restored."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    out = []
    for label, size in (("desktop", DESKTOP), ("phone", PHONE)):
        page.set_viewport_size(size)
        path = SHOTS / f"{name}-{label}.png"
        page.screenshot(path=str(path), full_page=True)
        out.append(path)
    page.set_viewport_size(DESKTOP)
    return out
