"""The operator path (python -m vigint.admin), device keys and the event schema."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from tests.functions.conftest import FIXTURE_START

REPO = Path(__file__).resolve().parents[2]


def _cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    full = {**os.environ, **env, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'functions'}"}
    return subprocess.run([sys.executable, "-m", "vigint.admin", *args], env=full, capture_output=True, text=True,
                          cwd=REPO, timeout=60)


def test_admin_cli_creates_tenant_and_device(fenv):
    from vigint import device_keys, pipeline

    r = _cli(fenv.env, "tenant", "create", "--id", "acme", "--name", "Acme Ltd", "--recipient", "sec@acme.example",
             "--recipient", "boss@acme.example", "--threshold", "2", "--cooldown-seconds", "60")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["alert"]["threshold"] == 2
    tenant = pipeline.tenant_ref("acme").get().to_dict()
    assert tenant["alert"] == {"threshold": 2, "recipients": ["sec@acme.example", "boss@acme.example"],
                               "link_ttl_seconds": 604800, "cooldown_seconds": 60}

    r = _cli(fenv.env, "device", "create", "--tenant", "acme", "--id", "nuc-1")
    assert r.returncode == 0, r.stderr
    creds = json.loads(r.stdout)
    assert set(creds) == {"tenant_id", "device_id", "key_version", "secret"}
    assert creds["secret"] == device_keys.derive_secret(fenv.env["VIGINT_DEVICE_KEY_SECRET"], "acme", "nuc-1", 1)
    dev = pipeline.tenant_ref("acme").collection("devices").document("nuc-1").get().to_dict()
    assert (dev["status"], dev["key_version"]) == ("active", 1) and "secret" not in dev

    again = _cli(fenv.env, "device", "create", "--tenant", "acme", "--id", "nuc-1")
    assert again.returncode == 2 and "already exists" in again.stderr
    bad = _cli(fenv.env, "tenant", "create", "--id", "Bad_Id", "--name", "x")
    assert bad.returncode == 2 and "must match" in bad.stderr
    assert _cli(fenv.env, "device", "create", "--tenant", "nobody", "--id", "nuc-1").returncode == 2

    rotated = _cli(fenv.env, "device", "rotate", "--tenant", "acme", "--id", "nuc-1")
    new = json.loads(rotated.stdout)
    assert new["key_version"] == 2 and new["secret"] != creds["secret"]


def test_device_keys():
    from vigint import device_keys

    s = device_keys.derive_secret("master", "demo", "nuc-1", 1)
    assert len(s) == 43 and "=" not in s
    assert s != device_keys.derive_secret("master", "demo", "nuc-1", 2)
    assert s != device_keys.derive_secret("master", "demo", "nuc-2", 1)
    sig = device_keys.sign(s, b"data")
    assert device_keys.verify(s, b"data", sig) and device_keys.verify(s, b"data", sig.upper())
    assert not device_keys.verify(s, b"data!", sig)
    assert not device_keys.verify(s, b"data", "")
    assert device_keys.secrets_equal(s, s) and not device_keys.secrets_equal(s, s[:-1])


def test_schema_rejects_what_the_contract_forbids(fenv):
    from vigint.schema import EdgeEvent

    creds = {"tenant_id": "demo", "device_id": "nuc-1"}
    good = fenv.event(creds)
    assert EdgeEvent.parse(json.dumps(good)).event_id == good["event_id"]
    health = {**fenv.event(creds, labels=()), "kind": "camera_health", "clip": None, "snapshot": None}
    assert EdgeEvent.parse(json.dumps(health)).clip is None
    bad_cases = {
        "extra field": {**good, "x": 1},
        "bad tenant": {**good, "tenant_id": "Demo!"},
        "path in id": {**good, "event_id": "../../etc"},
        "naive time": {**good, "start_time": "2026-11-22T06:00:00"},
        "end before start": {**good, "end_time": (FIXTURE_START - dt.timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")},
        "score > 1": {**good, "top_score": 1.5},
        "51 detections": {**good, "detections": good["detections"] * 51},
        "duplicate labels": {**good, "labels": ["person", "person"]},
        "other tenant's clip": {**good, "clip": {**good["clip"], "object": good["clip"]["object"].replace("demo", "evil")}},
        "wrong content type": {**good, "clip": {**good["clip"], "content_type": "video/webm"}},
        "schema 2": {**good, "schema_version": 2},
        "string number": {**good, "top_score": "0.5"},
    }
    for name, body in bad_cases.items():
        with pytest.raises(ValidationError):
            EdgeEvent.parse(json.dumps(body))
            pytest.fail(name)
