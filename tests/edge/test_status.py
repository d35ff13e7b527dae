"""Local status endpoint: loopback only, /healthz JSON, /metrics in the Prometheus text format (parsed back with
prometheus_client's own parser), and delivery outcome counting on a real spool."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from infra.local.stack import free_port
from tests.edge.test_spool import make_event
from vigint_edge.cloud.api_client import EdgeApiClient
from vigint_edge.config import EdgeConfig
from vigint_edge.delivery.publisher import EventPublisher
from vigint_edge.delivery.spool import Spool
from vigint_edge.status import MeteredDeliverer, StatusServer, render_metrics


def _status(state="ok", failed=0):
    return {
        "version": "0.1.0",
        "cameras": {
            "door": {"fps": 9.8, "detector_ms": 12.5, "frames": 1200, "events": 3, "motion_skipped": 700,
                     "detector_errors": 4,
                     "reconnects": 2, "dropped": 5, "connected": True,
                     "health": {"state": state, "connected": True, "last_frame_age_s": 0.1,
                                "alerts": {"camera_offline": 1, "camera_black": 0, "camera_tampered": 0}}},
            "yard": {"fps": 10.0, "detector_ms": 11.0, "frames": 900, "events": 0, "motion_skipped": 0,
                     "reconnects": 0, "dropped": 0, "connected": None, "health": None},
        },
        "spool": {"items": 4, "bytes": 123456, "failed": failed, "evicted_pending": 1, "delivered": 17,
                  "delivery_failed": 1, "delivery_retries": 6, "delivered_without_clip": 2},
    }


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_text_carries_every_figure():
    samples = _samples(render_metrics(_status).decode())
    assert samples[("vigint_camera_fps", (("camera", "door"),))] == 9.8
    assert samples[("vigint_camera_frames_total", (("camera", "door"),))] == 1200
    assert samples[("vigint_camera_detector_latency_seconds", (("camera", "door"),))] == pytest.approx(0.0125)
    assert samples[("vigint_camera_events_total", (("camera", "door"),))] == 3
    assert samples[("vigint_camera_detector_errors_total", (("camera", "door"),))] == 4
    assert samples[("vigint_camera_reconnects_total", (("camera", "door"),))] == 2
    assert samples[("vigint_camera_reconnects_total", (("camera", "yard"),))] == 0
    assert samples[("vigint_camera_frames_dropped_total", (("camera", "door"),))] == 5
    assert samples[("vigint_camera_up", (("camera", "door"),))] == 1
    assert samples[("vigint_camera_up", (("camera", "yard"),))] == 0, "no health monitor: not known to be up"
    assert samples[("vigint_camera_health_alerts_total", (("camera", "door"), ("problem", "camera_offline")))] == 1
    assert samples[("vigint_spool_items", ())] == 4
    assert samples[("vigint_spool_bytes", ())] == 123456
    assert samples[("vigint_deliveries_total", (("outcome", "ok"),))] == 17
    assert samples[("vigint_deliveries_total", (("outcome", "failed"),))] == 1
    assert samples[("vigint_spool_clip_evictions_total", ())] == 3
    assert samples[("vigint_edge_info", (("version", "0.1.0"),))] == 1


def test_server_answers_healthz_and_metrics_on_loopback():
    state = {"s": _status()}
    server = StatusServer(lambda: state["s"], "127.0.0.1", 0).start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        with urllib.request.urlopen(base + "/healthz", timeout=10) as resp:
            assert resp.headers["Content-Type"] == "application/json"
            body = json.loads(resp.read())
        assert body["ok"] is True and body["cameras"]["door"]["reconnects"] == 2
        state["s"] = _status(state="offline")
        assert json.loads(urllib.request.urlopen(base + "/healthz", timeout=10).read())["ok"] is False
        with urllib.request.urlopen(base + "/metrics", timeout=10) as resp:
            assert resp.headers["Content-Type"].startswith("text/plain; version=")
            samples = _samples(resp.read().decode())
        assert samples[("vigint_camera_up", (("camera", "door"),))] == 0
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(base + "/secrets", timeout=10)
        assert err.value.code == 404
    finally:
        server.stop()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=2)


def test_status_bug_is_a_500_not_a_crash():
    def broken():
        raise RuntimeError("boom")

    server = StatusServer(broken, "127.0.0.1", 0).start()
    try:
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=10)
        assert err.value.code == 500
    finally:
        server.stop()


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "example.com"])
def test_only_loopback_addresses_are_accepted(host):
    with pytest.raises(ValueError, match="loopback"):
        StatusServer(lambda: {}, host, 0)
    with pytest.raises(ValueError, match="loopback"):
        EdgeConfig.model_validate({"device": {"tenant_id": "demo", "device_id": "nuc-1",
                                              "api_url": "http://x"},
                                   "cameras": [{"id": "cam", "source": "a.avi"}], "status": {"host": host}})


def test_status_defaults_to_loopback_9393():
    cfg = EdgeConfig.model_validate({"device": {"tenant_id": "demo", "device_id": "nuc-1", "api_url": "http://x"},
                                     "cameras": [{"id": "cam", "source": "a.avi"}]})
    assert (cfg.status.host, cfg.status.port, cfg.status.enabled) == ("127.0.0.1", 9393, True)


def test_metered_deliverer_counts_real_outcomes(tmp_path: Path):
    """Against a closed port (cloud unreachable) and with an event of another device (refused for good)."""
    spool = Spool(tmp_path / "spool", max_bytes=10**7)
    mine, clip, jpeg = make_event(tmp_path, 0)
    spool.put(mine, clip, jpeg)
    api = EdgeApiClient(f"http://127.0.0.1:{free_port()}", "demo", "nuc-1", "secret", max_attempts=1)
    deliverer = MeteredDeliverer(spool, api, EventPublisher.from_api(api), key_version=1, secret="secret",
                                 max_attempts=1, backoff_initial_s=0.01, backoff_max_s=0.02)
    assert deliverer.deliver_pending() == 0
    assert deliverer.stats()["delivery_retries"] == 1 and deliverer.stats()["delivered"] == 0
    other, clip2, jpeg2 = make_event(tmp_path, 1, device="nuc-9")
    spool.remove(spool.pending()[0])
    spool.put(other, clip2, jpeg2)
    deliverer.deliver_pending()
    assert deliverer.stats()["delivery_failed"] == 1
    assert spool.stats()["failed"] == 1
