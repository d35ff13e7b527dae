"""The test OpenID provider: the certified Node ``oidc-provider`` (npm, pinned by ``package-lock.json``), installed
on first use with ``npm ci --ignore-scripts`` into ``.local/oidc-provider/{sha256(lock)[:12]}/`` (so a clean
machine, ``.ci/run`` included, needs only Node and npm, which the machine image has) and started on a free port
on 127.0.0.1 with ``provider.mjs``.

``start(redirect_uris)`` returns a running ``Provider``; ``Provider.sign_in(authorization_url, login)`` drives
the provider's own login and consent forms (devInteractions) with ``requests`` the way a browser would, and
returns the callback URL the provider redirects to (not followed: the console is served in-process).
"""

from __future__ import annotations

import dataclasses
import hashlib
import html.parser
import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import urljoin

import requests

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CACHE = REPO / ".local" / "oidc-provider"
CLIENTS = [{"client_id": "vigint-console", "client_secret": "console-secret-" + "x" * 24},
           {"client_id": "other-app", "client_secret": "other-secret-" + "y" * 24}]


def install() -> Path:
    """``npm ci --ignore-scripts`` of ``package-lock.json`` into the cache (once per lock); returns its folder."""
    lock = (HERE / "package-lock.json").read_bytes()
    target = CACHE / hashlib.sha256(lock).hexdigest()[:12]
    if not (target / "node_modules" / "oidc-provider" / "package.json").exists():
        target.mkdir(parents=True, exist_ok=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copy(HERE / name, target / name)
        subprocess.run(["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
                       cwd=target, check=True, timeout=300)
    shutil.copy(HERE / "provider.mjs", target / "provider.mjs")
    return target


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclasses.dataclass
class Provider:
    """A running provider: ``issuer`` (``http://127.0.0.1:PORT``), its registered ``clients``."""

    issuer: str
    clients: list[dict]
    process: subprocess.Popen
    log_path: Path

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def sign_in(self, authorization_url: str, login: str, redirect_prefix: str) -> str:
        """Opens ``authorization_url``, submits the provider's login form as ``login`` (any password) and its
        consent form, and returns the URL it finally redirects to under ``redirect_prefix`` (the callback)."""
        http = requests.Session()
        url, method, data = authorization_url, "GET", None
        for _ in range(20):
            resp = http.request(method, url, data=data, allow_redirects=False, timeout=10)
            if resp.is_redirect:
                location = urljoin(url, resp.headers["Location"])
                if location.startswith(redirect_prefix):
                    return location
                url, method, data = location, "GET", None
                continue
            assert resp.status_code == 200, (resp.status_code, resp.text[:500])
            form = _first_form(resp.text)
            assert form is not None, resp.text[:500]
            action, fields = form
            if fields.get("prompt") == "login":
                fields.update(login=login, password="any")
            url, method, data = urljoin(url, action), "POST", fields
        raise AssertionError("the provider never redirected back")


class _Forms(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.forms: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self.forms.append((a.get("action") or "", {}))
        elif tag == "input" and self.forms and a.get("type") == "hidden" and a.get("name"):
            self.forms[-1][1][a["name"]] = a.get("value") or ""


def _first_form(page: str):
    parser = _Forms()
    parser.feed(page)
    return parser.forms[0] if parser.forms else None


def start(redirect_uris: list[str], timeout_s: float = 30.0) -> Provider:
    """Installs (if needed) and starts the provider; returns once its discovery document answers."""
    folder = install()
    port = _free_port()
    log_path = folder / f"provider-{port}.log"
    env = {**os.environ, "OIDC_PORT": str(port), "OIDC_REDIRECT_URIS": ",".join(redirect_uris),
           "OIDC_CLIENTS": json.dumps(CLIENTS), "NODE_ENV": "development"}
    log = open(log_path, "wb")  # noqa: SIM115 (kept open for the process's life)
    proc = subprocess.Popen(["node", "provider.mjs"], cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT)
    issuer = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"oidc-provider exited {proc.returncode}: {log_path.read_text()[-2000:]}")
        try:
            if requests.get(issuer + "/.well-known/openid-configuration", timeout=1).ok:
                return Provider(issuer, [dict(c) for c in CLIENTS], proc, log_path)
        except requests.RequestException:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"oidc-provider did not start: {log_path.read_text()[-2000:]}")


try:
    import pytest
except ImportError:  # pragma: no cover
    pytest = None

if pytest is not None:
    @pytest.fixture(scope="session")
    def oidc_provider(stack):
        """The provider for the whole session, its client registered with the stack console's callback."""
        p = start([f"http://127.0.0.1:{stack.ports['console']}/signin/oidc/callback"])
        try:
            yield p
        finally:
            p.stop()
