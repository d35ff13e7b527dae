"""The composition root: builds every part of the edge daemon from its configuration and runs it.

Threads: one per camera (capture → motion gate → detector → events → spool), delivery (spool → signed uploads
→ publish): ``LIVE_DELIVERERS`` for the ``live`` lane (starts, updates, health events), so the starts of
several cameras that see the same intruder go out side by side, and one for the ``bulk`` lane (messages with a
clip, so a clip upload never delays an alert), one for heartbeats, one for health checks and, started on the first
``request_clip``, one for commands that take a while. Everything a component needs comes through its
constructor, so tests swap parts here and nowhere else.

Heartbeat answers (``apply_heartbeat_answer``) carry camera settings and commands. Changed settings go to the
camera's pipeline, and the shared detector's label filter becomes the union of every camera's labels, so a
label the cloud adds is detected from the next frame on. Each command's outcome is posted to
``POST /v1/commands/{command_id}/result`` (``EdgeApiClient.command_result``; a 404 or retries running out is
logged, never raised):

* ``restart``: done, then the daemon stops with exit status 75 (systemd starts it again).
* ``reload_config``: done (camera settings are applied from every heartbeat anyway).
* ``report_status``: done, ``result`` = ``status_report()`` (no secret: camera sources are redacted).
* ``request_clip``: on the command thread, ``CameraPipeline.request_clip(start, end)`` of that camera; done with
  the spooled recording's ``event_id``, or failed with ``"unknown camera"`` or the ``ClipUnavailable`` reason.
* unknown types and bad params: failed (``remote_config.parse_commands`` gives the detail).
"""

from __future__ import annotations

import importlib.metadata
import logging
import platform
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from vigint_edge import __version__
from vigint_edge.cloud import remote_config
from vigint_edge.cloud.api_client import ApiError, EdgeApiClient
from vigint_edge.capture.source import SourceUnavailable, VideoSource, redact
from vigint_edge.config import CameraConfig, EdgeConfig
from vigint_edge.delivery.deliverer import Deliverer
from vigint_edge.detection.detector import Detector, load_detector
from vigint_edge.events.pipeline import CameraPipeline, ClipUnavailable
from vigint_edge.cloud.remote_config import ClipCommand, PlainCommand
from vigint_edge.events.camera_health import HealthMonitor
from vigint_edge.detection.model_convert import default_model_path
from vigint_edge.delivery.publisher import EventPublisher
from vigint_edge.delivery.spool import Spool
from vigint_edge.status import MeteredDeliverer, StatusServer
from vigint_edge.systemd import Notifier

log = logging.getLogger(__name__)
PUBLISHER_WARM_TIMEOUT_S = 10.0  # longest wait at start for the Pub/Sub client before the cameras start
# Live-lane deliverers working side by side. One took about 0.25 s per start (upload URLs, snapshot PUT,
# publish: make bench-alerts, BENCHMARKS.md), so the fourth of four cameras confirming together waited
# about 0.75 s for the other three; three deliverers cut that wait to one delivery at most.
LIVE_DELIVERERS = 3


@dataclass
class EdgeDaemon:
    """A configured daemon.

    Args:
        config: the validated configuration.
        detector: the object detector every camera shares (calls serialised).
        spool: the durable spool of finished events.
        deliverer: moves spooled messages to the cloud: the live lane's (or, without ``bulk_deliverer``, all).
        api: the edge_api client (heartbeats).
        bulk_deliverer: the bulk lane's deliverer (messages with a clip), None to let ``deliverer`` do all.
        more_live: further deliverers of the live lane, each on its own thread beside ``deliverer`` (items are
            claimed one at a time, so each goes once; the cloud applies a lifecycle's messages in any order).
        stop: set to stop everything.
        exit_when_done: when every camera's source has ended (files), deliver what is spooled and return.
        max_frames: stop each camera after this many frames (tests).
        notifier: systemd notifications (READY, STATUS, WATCHDOG); a no-op outside systemd.
    """

    config: EdgeConfig
    detector: Detector
    spool: Spool
    deliverer: Deliverer
    api: EdgeApiClient
    bulk_deliverer: Deliverer | None = None
    more_live: list[Deliverer] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    exit_when_done: bool = False
    max_frames: int | None = None
    drain_timeout_s: float = 120.0
    pipelines: dict[str, CameraPipeline] = field(default_factory=dict)
    restart_requested: bool = False
    progress: Callable[[str, int, int | None], None] | None = None  # (camera, frames done, total or None)
    sources: dict[str, VideoSource] = field(default_factory=dict)
    health: dict[str, HealthMonitor] = field(default_factory=dict)
    status_server: StatusServer | None = None
    notifier: Notifier = field(default_factory=Notifier.from_env)
    _next_watchdog: float = field(default=0.0, init=False, repr=False)
    _started: float = field(default_factory=time.monotonic, init=False, repr=False)
    _jobs: queue.Queue = field(default_factory=queue.Queue, init=False, repr=False)
    _worker: threading.Thread | None = field(default=None, init=False, repr=False)

    def run(self) -> int:
        """Runs until ``stop`` is set (or, with ``exit_when_done``, until sources end and the spool is empty).

        Returns:
            0 when everything spooled was delivered, 1 when events remain in the spool.
        """
        work_dir = self.config.spool.dir / "recording"
        self.spool.add_listener(self._wake_lane)
        closed = self.spool.close_interrupted()  # events a crash left open: before any pipeline or delivery
        if closed:
            log.warning("closed %d event(s) left open by the last run as interrupted", len(closed))
        for cam in self.config.cameras:
            self.pipelines[cam.id] = CameraPipeline(cam, self.config.device, self.config.events, self.config.motion,
                                                    self.detector, self.spool, work_dir)
            self.health[cam.id] = HealthMonitor(cam, self.config.device, self.spool)  # the spool wakes delivery
        self._start_status_server()
        cameras = [threading.Thread(target=self._camera_loop, args=(cam,), name=f"camera-{cam.id}", daemon=True)
                   for cam in self.config.cameras]
        delivery_stop = threading.Event()
        delivery = [threading.Thread(target=d.run, args=(delivery_stop,), name=f"delivery-{d.lane or 'all'}",
                                     daemon=True) for d in self.deliverers]
        heartbeat = threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True)
        health = threading.Thread(target=self._health_loop, name="health", daemon=True)
        # The Pub/Sub client and publish credentials first (a second or more on a busy box: imports, a
        # channel, an edge_api call), so a camera that shows someone at once does not wait for them;
        # bounded, because offline the first publish simply tries again.
        warm = threading.Thread(target=self.deliverer.publisher.warm, name="publisher-warm", daemon=True)
        warm.start()
        warm.join(PUBLISHER_WARM_TIMEOUT_S)
        for t in delivery:
            t.start()
        heartbeat.start()
        health.start()
        for t in cameras:
            t.start()
        self.notifier.ready(status=f"watching {len(cameras)} camera(s)")
        try:
            if self.exit_when_done:
                for t in cameras:
                    while t.is_alive() and not self.stop.is_set():
                        t.join(0.5)
                        self._watchdog(delivery)
                self._drain()
                self.stop.set()
            else:
                while not self.stop.wait(1.0):
                    self._watchdog(delivery)
        except KeyboardInterrupt:
            self.stop.set()
        self.notifier.stopping()
        for t in cameras:
            t.join(10)
        delivery_stop.set()
        for t in delivery:
            t.join(30)
        if self._worker is not None:
            self._jobs.put(None)
            self._worker.join(30)
        if self.status_server is not None:
            self.status_server.stop()
        remaining = len(self.spool.pending())
        if remaining:
            log.warning("%d event(s) remain in the spool; they are delivered on the next start", remaining)
        if self.restart_requested:
            return 75  # EX_TEMPFAIL: systemd's Restart=always starts the daemon again
        return 1 if remaining else 0

    @property
    def deliverers(self) -> list[Deliverer]:
        """The delivery lanes' deliverers (live first)."""
        return [self.deliverer, *self.more_live] + ([self.bulk_deliverer] if self.bulk_deliverer is not None else [])

    def _wake_lane(self, item) -> None:
        """Spool listener: a new item wakes its lane's deliverer at once."""
        lane = item.lane
        for d in self.deliverers:
            d.wake(lane)

    def _watchdog(self, delivery: list[threading.Thread]) -> None:
        """WATCHDOG=1 at half of ``$WATCHDOG_USEC``, only while every delivery thread lives: if one died,
        systemd's watchdog restarts the service instead of letting the spool fill up silently."""
        interval = self.notifier.watchdog_interval_s
        now = time.monotonic()
        if interval is None or now < self._next_watchdog or not all(t.is_alive() for t in delivery):
            return
        self._next_watchdog = now + interval
        self.notifier.watchdog()

    def _drain(self) -> None:
        deadline = time.monotonic() + self.drain_timeout_s
        while self.spool.pending() and time.monotonic() < deadline and not self.stop.is_set():
            time.sleep(0.2)

    def _camera_loop(self, cam: CameraConfig) -> None:
        pipeline = self.pipelines[cam.id]
        monitor = self.health[cam.id]
        source = VideoSource(cam, stop=self.stop, max_frames=self.max_frames, on_state=monitor.source_state)
        self.sources[cam.id] = source
        try:
            for frame in source.frames():
                if source.fps:
                    pipeline.fps = source.fps
                monitor.observe(frame, frame.wall)
                pipeline.process(frame)
                if self.progress is not None:
                    self.progress(cam.id, frame.index + 1, source.total_frames)
        except SourceUnavailable as exc:
            log.error("%s", redact(str(exc)))
        except Exception:
            log.exception("camera %s (%s): pipeline failed", cam.id, redact(cam.source))
        finally:
            if not cam.is_stream or self.stop.is_set():
                monitor.close()  # a file ended or we are stopping: not a camera going offline
            try:
                pipeline.finish()
            except Exception:
                log.exception("camera %s: could not finish the active event", cam.id)
        log.info("camera %s: source ended after %d frames (%d events)", cam.id, pipeline.stats.frames,
                 pipeline.stats.events)

    def status(self) -> dict:
        """What a heartbeat reports (and ``/healthz``, ``/metrics`` show).

        Returns:
            ``{"version": str, "cameras": {id: {"fps", "detector_ms", "frames", "events", "motion_skipped",
            "detector_errors", "start_latency_ms", "reconnects", "dropped", "connected", "health":
            HealthMonitor.state()}}, "spool": {"items", "live", "bulk", "bytes", "failed", "open_events",
            "evicted_pending", "delivered", "delivery_failed", "delivery_retries", "delivered_without_clip"}}``;
            fps in frames per second, detector_ms in milliseconds, start_latency_ms the last event's time from
            its confirming frame's arrival to its ``start`` in the spool (None before the first), bytes in
            bytes; ``live``/``bulk`` are the items pending in each delivery lane; delivery counts are summed
            over the lanes.
        """
        cameras = {}
        for cid, p in self.pipelines.items():
            src, mon = self.sources.get(cid), self.health.get(cid)
            cameras[cid] = {"fps": round(p.stats.fps, 2), "detector_ms": round(p.stats.detector_ms, 2),
                            "frames": p.stats.frames, "events": p.stats.events,
                            "motion_skipped": p.stats.motion_skipped, "detector_errors": p.stats.detector_errors,
                            "start_latency_ms": p.stats.start_latency_ms[-1] if p.stats.start_latency_ms else None,
                            "reconnects": src.reconnects if src else 0, "dropped": src.dropped if src else 0,
                            "connected": src.connected if src and src.camera.is_stream else None,
                            "health": mon.state() if mon else None}
        spool = dict(self.spool.stats())
        spool["evicted_pending"] = sum(1 for it in self.spool.pending() if self.spool.load_state(it).clip_evicted)
        for d in self.deliverers:
            if isinstance(d, MeteredDeliverer):
                for key, n in d.stats().items():
                    spool[key] = spool.get(key, 0) + n
        return {"version": __version__, "cameras": cameras, "spool": spool}

    def _start_status_server(self) -> None:
        cfg = self.config.status
        if not cfg.enabled or self.status_server is not None:
            return
        try:
            self.status_server = StatusServer(self.status, cfg.host, cfg.port).start()
        except OSError as exc:  # the daemon's job is the cameras: run on without the endpoint
            log.error("status endpoint on %s:%d not started: %s", cfg.host, cfg.port, exc)

    def _health_loop(self) -> None:
        while not self.stop.wait(1.0):
            for monitor in self.health.values():
                try:
                    monitor.check()
                except Exception:  # noqa: BLE001 - the next check tries again
                    log.exception("camera %s: health check failed", monitor.camera.id)

    def _heartbeat_loop(self) -> None:
        while not self.stop.is_set():
            try:
                self.apply_heartbeat_answer(self.api.heartbeat(self.status()))
            except Exception as exc:  # the next beat tries again; events are unaffected
                log.warning("heartbeat failed: %s", exc)
            if self.stop.wait(self.config.heartbeat_s):
                return

    def apply_heartbeat_answer(self, answer: dict) -> None:
        """Applies the cloud's camera settings (zones, labels, thresholds) and runs the commands of a heartbeat
        answer (see the module doc). Never raises for a command's failure; long commands run on the command
        thread, so this returns within the result retries' bound (``EdgeApiClient.command_result``)."""
        answer = answer or {}
        current = {cid: p.camera for cid, p in self.pipelines.items()}
        updates = remote_config.camera_updates(answer, current)
        for cid, camera in updates.items():
            self.pipelines[cid].reconfigure(camera)
            log.info("camera %s: settings from the cloud applied (%d zone(s))", cid, len(camera.zones))
        if updates:
            self._update_detector_filter()
        commands, rejected = remote_config.parse_commands(answer)
        for bad in rejected:
            self._post_result(bad.command_id, "failed", bad.detail)
        for command in commands:
            self._run_command(command)

    def _update_detector_filter(self) -> None:
        """Applies ``detector_filter`` of the cameras' current settings to the shared detector."""
        labels, score = detector_filter([p.camera for p in self.pipelines.values()])
        if hasattr(self.detector, "score_threshold"):
            self.detector.score_threshold = score
        setter = getattr(self.detector, "set_labels_of_interest", None)
        if setter is not None:
            setter(labels)

    # --------------------------------------------------------------------------------------- commands
    def _run_command(self, command: PlainCommand | ClipCommand) -> None:
        cid = command.command_id
        log.info("command %s: %s", cid, command.type)
        if command.type == "restart":
            self._post_result(cid, "done", "restarting")
            log.warning("restart requested by the cloud: stopping (systemd starts the daemon again)")
            self.restart_requested = True
            self.stop.set()
        elif command.type == "reload_config":
            self._post_result(cid, "done", "camera settings are applied from every heartbeat")
            log.info("reload_config requested by the cloud: settings are re-read on every heartbeat")
        elif command.type == "report_status":
            try:
                report = self.status_report()
            except Exception as exc:  # noqa: BLE001 - answer the command whatever happened
                log.exception("command %s: status report failed", cid)
                self._post_result(cid, "failed", f"status report failed: {type(exc).__name__}")
                return
            self._post_result(cid, "done", "status report", result=report)
        elif command.type == "request_clip":
            if command.params.camera_id not in self.pipelines:
                self._post_result(cid, "failed", "unknown camera")
                return
            self._submit(lambda: self._request_clip(command))

    def _request_clip(self, command: ClipCommand) -> None:
        """On the command thread: asks the camera's pipeline for the recording and posts the outcome."""
        p = command.params
        try:
            event = self.pipelines[p.camera_id].request_clip(p.start, p.end)
        except ClipUnavailable as exc:  # the pipeline's "not recorded" answer
            log.info("command %s: no clip of %s for %s..%s: %s", command.command_id, p.camera_id, p.start, p.end,
                     exc)
            self._post_result(command.command_id, "failed", str(exc) or "clip unavailable")
            return
        except Exception as exc:  # noqa: BLE001 - answer the command whatever happened
            log.exception("command %s: request_clip on camera %s failed", command.command_id, p.camera_id)
            self._post_result(command.command_id, "failed", f"clip failed: {type(exc).__name__}: {exc}")
            return
        spooled = event.model_dump(mode="json", include={"camera_id", "kind", "start_time", "end_time"})
        self._post_result(command.command_id, "done", f"recording {event.event_id} spooled", result=spooled,
                          event_id=event.event_id)

    def _submit(self, job: Callable[[], None]) -> None:
        """Runs ``job`` on the command thread (started on first use), one job at a time, in order."""
        if self._worker is None or not self._worker.is_alive():
            self._worker = threading.Thread(target=self._work, name="commands", daemon=True)
            self._worker.start()
        self._jobs.put(job)

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                job()
            except Exception:  # noqa: BLE001 - the next command still runs
                log.exception("command job failed")

    def _post_result(self, command_id: str, status: str, detail: str, *, result: dict[str, Any] | None = None,
                     event_id: str | None = None) -> None:
        """Posts a command's outcome; logs and gives up on any failure."""
        body = {"status": status, "detail": detail, "result": result or {}, "event_id": event_id}
        try:
            try:
                self.api.command_result(command_id, body)
            except ValueError as exc:  # our own result does not fit the contract (e.g. > 64 KiB): say so
                log.error("command %s: result not sendable: %s", command_id, exc)
                self.api.command_result(command_id, {"status": "failed", "detail": f"result not sendable: {exc}"})
        except ApiError as exc:
            if exc.status == 404:
                log.warning("command %s: the cloud does not know this command (%s); result dropped", command_id,
                            exc)
            else:
                log.warning("command %s: could not report %s (%s); giving up", command_id, status, exc)
            return
        except Exception as exc:  # noqa: BLE001 - a result must never break the heartbeat loop
            log.warning("command %s: could not report %s (%s); giving up", command_id, status, type(exc).__name__)
            return
        log.info("command %s: reported %s", command_id, status)

    def status_report(self) -> dict:
        """What ``report_status`` answers: ``status()`` plus ``uptime_s`` (seconds since the daemon was built)
        and ``config``: ``{"device": {"tenant_id", "device_id", "key_version"}, "heartbeat_s", "model":
        {"path", "device"}, "detector_labels": [str] | None, "cameras": [{"id", "source" (credentials
        redacted), "enabled", "detect_fps", "labels", "alert_labels", "min_score", "zones": [name]}]}`` and
        ``versions``: ``{"vigint_edge", "python", "openvino", "opencv-python-headless", "av"}`` (None: not
        installed). Holds no secret."""
        report = self.status()
        cameras = [self.pipelines[c.id].camera if c.id in self.pipelines else c for c in self.config.cameras]
        dev = self.config.device
        labels = getattr(self.detector, "labels_of_interest", None)
        report["uptime_s"] = round(time.monotonic() - self._started, 1)
        report["versions"] = _versions()
        report["config"] = {
            "device": {"tenant_id": dev.tenant_id, "device_id": dev.device_id, "key_version": dev.key_version},
            "heartbeat_s": self.config.heartbeat_s,
            "model": {"path": str(self.config.model.path) if self.config.model.path else None,
                      "device": self.config.model.device},
            "detector_labels": sorted(labels) if labels is not None else None,
            "cameras": [{"id": c.id, "source": redact(c.source), "enabled": c.enabled, "detect_fps": c.detect_fps,
                         "labels": list(c.labels), "alert_labels": list(c.alert_labels), "min_score": c.min_score,
                         "zones": [z.name for z in c.zones]} for c in cameras],
        }
        return report


def detector_filter(cameras: list[CameraConfig]) -> tuple[set[str], float]:
    """What the detector shared by ``cameras`` returns: the union of their labels, down to the lowest score any
    of them accepts (each pipeline then applies its own labels and scores)."""
    return {label for c in cameras for label in c.labels}, min(c.lowest_score for c in cameras)


def _versions() -> dict[str, str | None]:
    """Versions of the daemon and the libraries that shape its results."""
    out: dict[str, str | None] = {"vigint_edge": __version__, "python": platform.python_version()}
    for dist in ("openvino", "opencv-python-headless", "av"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = None
    return out


def build_daemon(config: EdgeConfig, secret: str, *, detector: Detector | None = None,
                 exit_when_done: bool = False, max_frames: int | None = None) -> EdgeDaemon:
    """Wires the real parts together from the configuration (the one composition root).

    Raises:
        FileNotFoundError: the model file does not exist.
    """
    if detector is None:
        model_path = config.model.path or default_model_path()
        labels_of_interest, score = detector_filter(config.cameras)
        detector = load_detector(model_path, config.model.device, labels_path=config.model.labels_path,
                                 labels_of_interest=labels_of_interest, score_threshold=score)
    spool = Spool(Path(config.spool.dir), max_bytes=config.spool.max_bytes)
    dev = config.device
    api = EdgeApiClient(dev.api_url, dev.tenant_id, dev.device_id, secret)
    publisher = EventPublisher.from_api(api)
    def deliverer(lane: str) -> MeteredDeliverer:  # one HTTP client each: every deliverer has its own thread
        return MeteredDeliverer(spool, EdgeApiClient(dev.api_url, dev.tenant_id, dev.device_id, secret),
                                publisher, key_version=dev.key_version, secret=secret, lane=lane)

    live = [deliverer("live") for _ in range(LIVE_DELIVERERS)]
    return EdgeDaemon(config=config, detector=detector, spool=spool, deliverer=live[0], more_live=live[1:],
                      api=api, bulk_deliverer=deliverer("bulk"), exit_when_done=exit_when_done,
                      max_frames=max_frames)
