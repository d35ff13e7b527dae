"""Session fixtures: one real local stack (emulators, fake-gcs-server, functions-framework processes,
SMTP sink) shared by the whole suite, started on free ports and stopped at the end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from infra import assets
from infra.local.smtp_sink import read_messages
from infra.local.stack import PARTS, REPO, LocalStack, free_port


@dataclass
class SmtpSink:
    """The stack's SMTP server as the tests see it."""

    host: str
    port: int
    maildir: Path

    def messages(self):
        """Every message received since the last ``clear()``, oldest first (``EmailMessage``)."""
        return read_messages(self.maildir)

    def clear(self) -> None:
        for sub in ("new", "cur", "tmp"):
            for f in (self.maildir / sub).glob("*"):
                f.unlink()


class TestStack(LocalStack):
    """A ``LocalStack`` with the operator's provisioning path bolted on for tests."""

    def provision(self, tenant_id: str, device_id: str, recipients: list[str] | None = None,
                  threshold: int = 1, **tenant_kw) -> dict:
        """Creates the tenant (if new) and the device through ``python -m vigint.admin``, the CLI an
        operator uses, and returns the device credentials ``{tenant_id, device_id, key_version, secret}``."""
        env = {**os.environ, **self.env, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'functions'}"}
        cmd = [sys.executable, "-m", "vigint.admin", "tenant", "create", "--id", tenant_id,
               "--name", tenant_id.title(), "--threshold", str(threshold)]
        for r in recipients or []:
            cmd += ["--recipient", r]
        for k, v in tenant_kw.items():
            cmd += [f"--{k.replace('_', '-')}", str(v)]
        subprocess.run(cmd, env=env, check=True, capture_output=True, cwd=REPO)
        out = subprocess.run(
            [sys.executable, "-m", "vigint.admin", "device", "create", "--tenant", tenant_id, "--id", device_id],
            env=env, check=True, capture_output=True, cwd=REPO, text=True,
        )
        return json.loads(out.stdout)


@pytest.fixture(scope="session")
def stack(tmp_path_factory) -> TestStack:
    """The whole local stack on free ports; the process environment points Google's clients at it."""
    s = TestStack(workdir=tmp_path_factory.mktemp("stack"), ports={p: free_port() for p in PARTS})
    s.start()
    saved = {k: os.environ.get(k) for k in s.env}
    os.environ.update(s.env)
    try:
        yield s
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        s.stop()


@pytest.fixture(scope="session")
def emulators(stack) -> TestStack:
    """Firestore, Pub/Sub and fake-gcs-server (the same running stack; ``.env``, ``.reset()``)."""
    return stack


@pytest.fixture(scope="session")
def smtp_sink(stack) -> SmtpSink:
    return SmtpSink(host="127.0.0.1", port=stack.ports["smtp"], maildir=stack.maildir)


@pytest.fixture
def functions_env(stack, monkeypatch):
    """In-process function calls see what a deployed function sees; Firestore and mail start empty."""
    for k, v in stack.function_env.items():
        monkeypatch.setenv(k, v)
    stack.reset()
    try:
        from vigint import clients
    except ImportError:  # pragma: no cover - before functions/ exists
        clients = None
    if clients is not None and hasattr(clients, "reset"):
        clients.reset()
    yield stack.function_env
    if clients is not None and hasattr(clients, "reset"):
        clients.reset()


# ---- the real detector model and the real video (fetched and converted once, cached in .local/) ----


@pytest.fixture(scope="session")
def tfjs_model_dir() -> Path:
    """Directory of the tfjs coco-ssd graph model (``model.json`` + 5 shards)."""
    return assets.ensure_coco_ssd_tfjs(assets.DEFAULT_CACHE_DIR)


@pytest.fixture(scope="session")
def default_model_dir(tfjs_model_dir: Path) -> Path:
    """Directory of the converted OpenVINO IR: ``model.xml``, ``model.bin``, ``labels.json``, ``model.json``."""
    from vigint_edge.detection.model_convert import ensure_default_model

    return ensure_default_model(tfjs_model_dir, assets.DEFAULT_MODEL_DIR)


@pytest.fixture(scope="session")
def vtest_video() -> Path:
    """Path of ``vtest.avi`` (768x576, 10 fps, 795 frames, people walking, a van and cars)."""
    return assets.ensure_vtest_video(assets.DEFAULT_CACHE_DIR)
