"""The local status endpoint: ``GET /healthz`` (JSON) and ``GET /metrics`` (Prometheus text format).

It listens on a loopback address only (``status.host`` in the configuration must be one): it has no
authentication and is meant for the box's own monitoring (node exporter textfile, a local Prometheus,
``curl`` over SSH). Both answers are computed at request time from ``EdgeDaemon.status()``, the same
snapshot the heartbeats send, so the three never disagree.

Also here: ``MeteredDeliverer``, a ``Deliverer`` that counts the outcome of every delivery attempt (and
events delivered without their evicted clip), the figures behind ``vigint_deliveries_total`` and
``vigint_spool_clip_evictions_total``.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Iterable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily

from vigint_edge.delivery.deliverer import Deliverer, Outcome
from vigint_edge.delivery.spool import SpoolItem

log = logging.getLogger(__name__)

__all__ = ["MeteredDeliverer", "StatusCollector", "StatusServer", "render_metrics"]


class MeteredDeliverer(Deliverer):
    """A ``Deliverer`` that counts attempt outcomes (same constructor).

    Attributes:
        outcomes: ``Outcome.value`` -> attempts that ended so (``delivered``, ``failed``, ``retry``, ``auth``,
            ``gone``).
        delivered_without_clip: delivered events whose clip the spool had evicted.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._counts_lock = threading.Lock()
        self.outcomes: Counter[str] = Counter()
        self.delivered_without_clip = 0

    def attempt(self, item: SpoolItem) -> Outcome:
        try:
            evicted = self.spool.load_state(item).clip_evicted
        except (OSError, ValueError):
            evicted = False
        outcome = super().attempt(item)
        with self._counts_lock:
            self.outcomes[outcome.value] += 1
            if outcome is Outcome.DELIVERED and evicted:
                self.delivered_without_clip += 1
        return outcome

    def stats(self) -> dict[str, int]:
        """``{"delivered", "delivery_failed", "delivery_retries", "delivered_without_clip"}`` since start."""
        with self._counts_lock:
            return {
                "delivered": self.outcomes[Outcome.DELIVERED.value],
                "delivery_failed": self.outcomes[Outcome.FAILED.value],
                "delivery_retries": self.outcomes[Outcome.RETRY.value] + self.outcomes[Outcome.AUTH.value],
                "delivered_without_clip": self.delivered_without_clip,
            }


class StatusCollector:
    """A prometheus_client collector that turns one ``EdgeDaemon.status()`` snapshot into metrics.

    Args:
        status: returns the snapshot (see ``EdgeDaemon.status``).
    """

    def __init__(self, status: Callable[[], dict]) -> None:
        self._status = status

    def collect(self) -> Iterable:
        s = self._status()
        info = InfoMetricFamily("vigint_edge", "Edge daemon build")
        info.add_metric([], {"version": str(s.get("version", ""))})
        yield info
        cams = s.get("cameras", {})

        def per_camera(cls, name, doc, key, scale=1.0):
            fam = cls(name, doc, labels=["camera"])
            for cid, c in sorted(cams.items()):
                if c.get(key) is not None:
                    fam.add_metric([cid], float(c[key]) * scale)
            return fam

        yield per_camera(GaugeMetricFamily, "vigint_camera_fps", "Frames per second processed", "fps")
        yield per_camera(CounterMetricFamily, "vigint_camera_frames", "Frames read since start", "frames")
        yield per_camera(GaugeMetricFamily, "vigint_camera_detector_latency_seconds",
                         "Mean detector latency per inference, seconds", "detector_ms", 0.001)
        yield per_camera(CounterMetricFamily, "vigint_camera_events", "Events finished since start", "events")
        yield per_camera(CounterMetricFamily, "vigint_camera_detector_errors",
                         "Detector calls that failed (frame skipped) since start", "detector_errors")
        yield per_camera(CounterMetricFamily, "vigint_camera_reconnects",
                         "Stream connections lost or stalled since start", "reconnects")
        yield per_camera(CounterMetricFamily, "vigint_camera_frames_dropped",
                         "Frames dropped because processing fell behind", "dropped")
        up = GaugeMetricFamily("vigint_camera_up", "1 when the camera delivers frames and is healthy",
                               labels=["camera"])
        alerts = CounterMetricFamily("vigint_camera_health_alerts", "Camera health alerts raised",
                                     labels=["camera", "problem"])
        for cid, c in sorted(cams.items()):
            h = c.get("health") or {}
            up.add_metric([cid], 1.0 if h.get("state") == "ok" else 0.0)
            for problem, n in sorted((h.get("alerts") or {}).items()):
                alerts.add_metric([cid, problem], float(n))
        yield up
        yield alerts
        sp = s.get("spool", {})
        lanes = GaugeMetricFamily("vigint_spool_lane_items", "Items waiting in each delivery lane", labels=["lane"])
        for lane in ("live", "bulk"):
            lanes.add_metric([lane], float(sp.get(lane, 0)))
        yield lanes
        for key, name, doc in (("items", "vigint_spool_items", "Events waiting in the spool"),
                               ("bytes", "vigint_spool_bytes", "Bytes used by the spool"),
                               ("failed", "vigint_spool_failed_items", "Events the cloud refused for good")):
            g = GaugeMetricFamily(name, doc)
            g.add_metric([], float(sp.get(key, 0)))
            yield g
        deliveries = CounterMetricFamily("vigint_deliveries", "Delivery attempts by outcome", labels=["outcome"])
        deliveries.add_metric(["ok"], float(sp.get("delivered", 0)))
        deliveries.add_metric(["failed"], float(sp.get("delivery_failed", 0)))
        deliveries.add_metric(["retry"], float(sp.get("delivery_retries", 0)))
        yield deliveries
        ev = CounterMetricFamily("vigint_spool_clip_evictions",
                                 "Clips evicted to stay within the spool budget (delivered + still pending)")
        ev.add_metric([], float(sp.get("delivered_without_clip", 0) + sp.get("evicted_pending", 0)))
        yield ev


def render_metrics(status: Callable[[], dict]) -> bytes:
    """The Prometheus text exposition of one status snapshot (a registry of its own, no globals)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatusCollector(status))
    return generate_latest(registry)


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        path = self.path.split("?", 1)[0]
        try:
            if path == "/healthz":
                s = self.server.status()
                body = json.dumps({"ok": _healthy(s), **s}, default=str).encode()
                self._send(200, "application/json", body)
            elif path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, render_metrics(self.server.status))
            else:
                self._send(404, "application/json", b'{"error": "not found"}')
        except Exception:  # noqa: BLE001 - a status bug must not take the daemon down
            log.exception("status: %s failed", path)
            self._send(500, "application/json", b'{"error": "internal"}')

    def _send(self, code: int, content_type: str, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt: str, *args) -> None:
        log.debug("status: " + fmt, *args)


def _healthy(s: dict) -> bool:
    """Every camera is ok (or starting) and nothing sits in failed/."""
    cams = s.get("cameras", {}).values()
    return all((c.get("health") or {}).get("state", "ok") in ("ok", "starting") for c in cams) and \
        not s.get("spool", {}).get("failed", 0)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, addr, status: Callable[[], dict]) -> None:
        self.status = status
        if ":" in addr[0]:
            import socket

            self.address_family = socket.AF_INET6
        super().__init__(addr, _Handler)


class StatusServer:
    """Serves ``/healthz`` and ``/metrics`` in a background thread.

    Args:
        status: returns the status snapshot (``EdgeDaemon.status``).
        host: a loopback address (``127.0.0.1``, ``::1``, ``localhost``).
        port: TCP port; 0 picks a free one (see ``port`` after ``start``).

    Raises:
        ValueError: ``host`` is not a loopback address.
    """

    def __init__(self, status: Callable[[], dict], host: str = "127.0.0.1", port: int = 9393) -> None:
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if not loopback:
            raise ValueError(f"status endpoint must listen on a loopback address, not {host!r}")
        self._status = status
        self.host = host
        self.port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> "StatusServer":
        """Binds and starts serving.

        Raises:
            OSError: the port is taken.
        """
        self._server = _Server((self.host, self.port), self._status)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.5},
                                        name="status-http", daemon=True)
        self._thread.start()
        log.info("status: serving http://%s:%d/healthz and /metrics", self.host, self.port)
        return self

    def stop(self) -> None:
        """Stops serving and closes the socket (no error if not started)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
