"""`vigint-edge check-config`: a good file passes; each kind of bad file gets an error naming the field."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from vigint_edge.config import ConfigError, load_config, load_secret

REPO = Path(__file__).resolve().parents[2]
GOOD = """
device: {tenant_id: acme, device_id: nuc-1, api_url: "https://example.invalid/edge_api", secret_file: SECRET}
cameras:
  - id: entrance
    source: rtsp://user:pw@192.0.2.10/stream1
    zones: [{name: door, points: [[0.1, 0.1], [0.5, 0.1], [0.5, 0.9]], loitering_s: 3}]
    alert_zones: [door]
    filters: {person: {threshold: 0.7, min_area: 0.001}}
"""


def _check(tmp_path: Path, text: str, secret_mode: int = 0o600) -> subprocess.CompletedProcess:
    secret = tmp_path / "secret"
    secret.write_text("s3cret")
    secret.chmod(secret_mode)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(text.replace("SECRET", str(secret)))
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGINT_")}
    env["PYTHONPATH"] = str(REPO / "edge_daemon")
    return subprocess.run([sys.executable, "-m", "vigint_edge.cli", "check-config", "--config", str(cfg)],
                          capture_output=True, text=True, env=env)


def test_a_good_file_passes(tmp_path):
    out = _check(tmp_path, GOOD)
    assert out.returncode == 0, out.stderr
    assert "1 camera" in out.stdout


@pytest.mark.parametrize(
    "change, expected",
    [
        (("device_id: nuc-1", "device_id: NUC 1"), "device.device_id"),
        (("api_url: \"https://example.invalid/edge_api\"", "api_url: ftp://x"), "device.api_url"),
        (("[0.5, 0.9]", "[1.5, 0.9]"), "cameras.0.zones.0.points"),
        (("alert_zones: [door]", "alert_zones: [gate]"), "gate"),
        (("threshold: 0.7", "treshold: 0.7"), "cameras.0.filters.person.treshold"),
        (("min_area: 0.001", "min_area: 0.9, max_area: 0.5"), "min_area must be smaller"),
        (("cameras:", "cameras: []\nx:"), "cameras"),
        (("device: {", "device: [{"), "not valid YAML"),
        (("source: rtsp://user:pw@192.0.2.10/stream1", "source: rtsp://user:pw@192.0.2.10/stream1\n    "
          "rtsp_transport: quic"), "cameras.0.rtsp_transport"),
    ],
)
def test_each_bad_file_names_the_field(tmp_path, change, expected):
    out = _check(tmp_path, GOOD.replace(*change))
    assert out.returncode == 2
    assert expected in out.stderr, out.stderr
    assert "pw@" not in out.stderr


def test_a_secret_file_readable_by_others_is_refused(tmp_path):
    out = _check(tmp_path, GOOD, secret_mode=0o644)
    assert out.returncode == 2 and "chmod 600" in out.stderr


def test_environment_overrides_and_systemd_credentials(tmp_path):
    (tmp_path / "c.yaml").write_text(GOOD.replace("SECRET", str(tmp_path / "none")))
    cfg = load_config(tmp_path / "c.yaml", environ={"VIGINT_DEVICE_ID": "nuc-9", "VIGINT_SPOOL_DIR": "/tmp/sp"})
    assert cfg.device.device_id == "nuc-9" and str(cfg.spool.dir) == "/tmp/sp"
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "device-secret").write_text("from-systemd\n")
    assert load_secret(cfg, environ={"CREDENTIALS_DIRECTORY": str(creds)}) == "from-systemd"
    with pytest.raises(ConfigError, match="does not exist"):
        load_secret(cfg, environ={})
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "missing.yaml", environ={})
