"""The console's defences as Chromium applies them, against a page of another origin on the same machine (same
site, other port: the cookie is sent, so only the console's own checks stand in the way): that page cannot frame
the console (``frame-ancestors 'none'``, ``X-Frame-Options: DENY``), its form cannot sign the user out (CSRF:
``Origin``/``Sec-Fetch-Site`` and the token), and a used sign-in link shows its refusal page. axe-core on every
console page visited, screenshots at desktop and phone widths."""

from __future__ import annotations

import datetime as dt
import http.server
import threading

import pytest

from infra.local.stack import free_port
from tests.browser.conftest import axe_violations, screenshots, sign_in

pytestmark = pytest.mark.slow


@pytest.fixture
def other_origin(console_url):
    """``http://127.0.0.1:{another port}``: a page that frames the console and a form that posts to it."""
    pages = {
        "/frame.html": f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Another site</title>
</head><body><h1>Another site framing the console</h1>
<iframe id="signin" title="console sign-in" src="{console_url}/signin" width="600" height="300"></iframe>
<iframe id="home" title="console overview" src="{console_url}/" width="600" height="300"></iframe>
</body></html>""",
        "/post.html": f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Another site</title>
</head><body><h1>Another site posting to the console</h1>
<form method="post" action="{console_url}/signout"><input type="hidden" name="csrf_token" value="guessed">
<button type="submit">Win a prize</button></form></body></html>""",
    }

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = pages.get(self.path, "").encode()
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    port = free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    server.shutdown()
    server.server_close()


def test_another_origin_can_neither_frame_the_console_nor_post_to_it(new_page, console_url, tenant_id,
                                                                     other_origin):
    from vigint.console import signin, users

    # --- A used link, in a fresh browser: its refusal page.
    page = new_page(bypass_csp=True)  # axe's script needs the CSP bypassed; cookies and headers are unchanged
    user = users.put_user(tenant_id, email="sec-owner@example.com", role="owner")
    link = signin.make_link(user, ip=None, now=dt.datetime.now(dt.timezone.utc))
    link = console_url + link[link.index("/signin/link"):]
    page.goto(link)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(console_url + "/")
    assert page.get_by_role("heading", name="Sites").is_visible()
    assert axe_violations(page) == []
    screenshots(page, "security-overview")
    second = new_page(bypass_csp=True)
    resp = second.goto(link)
    assert resp.status == 410 and second.get_by_role("heading", name="This sign-in link does not work").is_visible()
    assert second.get_by_role("button", name="Sign in").count() == 0
    assert axe_violations(second) == []
    screenshots(second, "security-link-used")

    # --- Another origin's form posting to the console, with the user's cookie: refused, still signed in.
    page.goto(other_origin + "/post.html")
    with page.expect_response(lambda r: r.url == console_url + "/signout") as answer:
        page.get_by_role("button", name="Win a prize").click()
    assert answer.value.status == 403
    page.wait_for_load_state()
    assert page.url == console_url + "/signout"
    assert page.get_by_text("did not come from the console").is_visible()
    assert axe_violations(page) == []
    screenshots(page, "security-csrf-refused")
    assert page.goto(console_url + "/").status == 200 and page.url == console_url + "/", "still signed in"

    # --- Another origin framing the console, in a browser that enforces the CSP (no bypass), signed in.
    framed = new_page()
    sign_in(framed, console_url, tenant_id, "sec-viewer@example.com", role="viewer")
    answered = []
    framed.on("response", lambda r: answered.append((r.url, r.status, r.headers.get("x-frame-options"),
                                                      r.headers.get("content-security-policy", ""))))
    framed.goto(other_origin + "/frame.html")
    framed.wait_for_load_state("load")
    framed.wait_for_timeout(500)
    console_answers = [a for a in answered if a[0].startswith(console_url)]
    # The console did answer the frames (so what follows is the browser refusing, not a network failure)...
    assert {a[0] for a in console_answers} >= {console_url + "/signin", console_url + "/"}, console_answers
    assert all(a[2] == "DENY" and "frame-ancestors 'none'" in a[3] for a in console_answers), console_answers
    # ... and Chromium showed none of it: each frame is its error page, with none of the console's text.
    children = [f for f in framed.frames if f != framed.main_frame]
    assert len(children) == 2
    for frame in children:
        assert not frame.url.startswith(console_url), f"a frame shows {frame.url}"
        try:
            text = frame.evaluate("() => document.body ? document.body.innerText : ''")
        except Exception:  # the error page may not be scriptable: nothing of ours is in it either way
            text = ""
        assert "Vigint" not in text and "Sites" not in text and "Sign in" not in text, text
    screenshots(framed, "security-framed")
