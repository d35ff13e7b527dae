"""RTSP cameras against a real RTSP server: GStreamer's ``gst-rtsp-server`` (Debian packages
``gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good gstreamer1.0-plugins-bad python3-gi``), run as a separate
process with Debian's ``/usr/bin/python3``, serving H.264 (RTP over UDP) cut from vtest.avi.

The server is killed (SIGKILL) or frozen (SIGSTOP) mid-stream; the same ``VideoSource`` iteration must go on
delivering frames once it is back, and a file camera in the same daemon must not notice.
"""

from __future__ import annotations

import json
import signal
import subprocess
import textwrap
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from infra.local.stack import free_port
from vigint_edge.capture.source import VideoSource
from vigint_edge.config import CameraConfig

pytestmark = pytest.mark.slow

SYSTEM_PYTHON = "/usr/bin/python3"
APT_PACKAGES = "gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good gstreamer1.0-plugins-bad python3-gi"

SERVER = textwrap.dedent(
    """
    import sys
    import gi
    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer
    Gst.init(None)
    port, mount, mp4 = sys.argv[1], sys.argv[2], sys.argv[3]
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    # The file is already H.264: no encoding here, just RTP packetising at the file's own pace.
    factory.set_launch(f'( filesrc location="{mp4}" ! qtdemux ! h264parse config-interval=-1 '
                       f'! rtph264pay name=pay0 pt=96 config-interval=1 )')
    factory.set_shared(False)  # each client (each reconnect) gets the stream from its start
    server.get_mount_points().add_factory(mount, factory)
    if server.attach(None) == 0:
        sys.exit(f"cannot listen on 127.0.0.1:{port}")
    print("ready", flush=True)
    GLib.MainLoop().run()
    """
)

CHECK = textwrap.dedent(
    """
    import gi
    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import Gst, GstRtspServer
    Gst.init(None)
    missing = [e for e in ("filesrc", "qtdemux", "h264parse", "rtph264pay") if Gst.ElementFactory.find(e) is None]
    print(",".join(missing))
    """
)


def _rtsp_server_missing() -> str | None:
    if not Path(SYSTEM_PYTHON).exists():
        return f"{SYSTEM_PYTHON} is absent"
    out = subprocess.run([SYSTEM_PYTHON, "-c", CHECK], capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        return f"GStreamer RTSP server bindings are absent ({out.stderr.strip().splitlines()[-1:]})"
    if out.stdout.strip():
        return f"GStreamer elements missing: {out.stdout.strip()}"
    return None


class RtspServer:
    """One gst-rtsp-server process serving ``mp4`` at ``rtsp://127.0.0.1:{port}/cam``; restartable on the
    same port."""

    def __init__(self, mp4: Path, workdir: Path) -> None:
        self.mp4 = mp4
        self.port = free_port()
        self.script = workdir / "rtsp_server.py"
        self.script.write_text(SERVER)
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/cam"

    def start(self) -> None:
        self.proc = subprocess.Popen([SYSTEM_PYTHON, str(self.script), str(self.port), "/cam", str(self.mp4)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = _readline_with_timeout(self.proc, 30)
        if line.strip() != "ready":
            self.proc.kill()
            raise RuntimeError(f"RTSP server did not start: {line!r} {self.proc.stderr.read()}")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop_signal(self, sig) -> None:
        self.proc.send_signal(sig)

    def close(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(10)


def _readline_with_timeout(proc: subprocess.Popen, timeout: float) -> str:
    box: list[str] = []
    t = threading.Thread(target=lambda: box.append(proc.stdout.readline()), daemon=True)
    t.start()
    t.join(timeout)
    return box[0] if box else ""


@pytest.fixture(scope="module")
def h264_clip(vtest_video, tmp_path_factory) -> Path:
    """The first 30 s of vtest.avi as an IP camera sends it (H.264, a keyframe every 2 s, no B-frames)."""
    from vigint_edge.bench import make_h264

    return make_h264(vtest_video, tmp_path_factory.mktemp("rtsp") / "vtest-30s.mp4", seconds=30)


@pytest.fixture
def rtsp_server(h264_clip, tmp_path):
    reason = _rtsp_server_missing()
    if reason:
        pytest.skip(f"no real RTSP server: {reason}; install with apt-get install {APT_PACKAGES}")
    server = RtspServer(h264_clip, tmp_path)
    server.start()
    yield server
    server.close()


class Reader:
    """Iterates one ``VideoSource`` in a thread, recording frames and connection state changes."""

    def __init__(self, source: VideoSource) -> None:
        self.source = source
        self.indexes: list[int] = []
        self.times: list[float] = []
        self.states: list[tuple[float, bool, str]] = []
        self.error: BaseException | None = None
        source.on_state = lambda ok, why: self.states.append((time.monotonic(), ok, why))
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            for frame in self.source.frames():
                assert frame.image.shape == (576, 768, 3)
                self.indexes.append(frame.index)
                self.times.append(time.monotonic())
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    def wait_frames(self, n: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.indexes) < n:
            assert self.error is None, self.error
            assert time.monotonic() < deadline, f"only {len(self.indexes)} of {n} frames within {timeout} s"
            time.sleep(0.05)


def test_stream_killed_and_restarted_resumes_on_the_same_iteration(rtsp_server):
    stop = threading.Event()
    cam = CameraConfig(id="door", source=rtsp_server.url, stall_timeout_s=3.0, reconnect_max_s=2.0)
    reader = Reader(VideoSource(cam, stop=stop))
    reader.thread.start()
    try:
        reader.wait_frames(20, timeout=30)
        rtsp_server.kill()
        # Frames already buffered may still arrive (more of them on a loaded machine); once the source says
        # the stream is lost, none may until it is back.
        deadline = time.monotonic() + 30
        while not any(not ok for _, ok, _ in reader.states):
            assert time.monotonic() < deadline, "the dead server was never noticed"
            time.sleep(0.05)
        killed_at = len(reader.indexes)
        time.sleep(2.0)  # down for a while: reconnect attempts fail meanwhile
        assert len(reader.indexes) == killed_at, "frames kept coming from a dead server"
        rtsp_server.start()
        reader.wait_frames(killed_at + 20, timeout=40)
    finally:
        stop.set()
        reader.thread.join(20)
    assert not reader.thread.is_alive(), "the iteration did not end when stop was set"
    assert reader.error is None
    assert reader.source.reconnects >= 1
    assert reader.indexes == list(range(len(reader.indexes))), "one iteration, frame indexes continue"
    ups = [s for s in reader.states if s[1]]
    downs = [s for s in reader.states if not s[1]]
    assert len(ups) >= 2 and downs, reader.states
    assert "stream ended" in downs[0][2] or "stalled" in downs[0][2]
    assert any(f"cannot open {rtsp_server.url}" in why for _, _, why in downs), "reconnects failed while down"


def test_stalled_stream_is_abandoned_after_stall_timeout_and_reopened(rtsp_server):
    stop = threading.Event()
    cam = CameraConfig(id="door", source=rtsp_server.url, stall_timeout_s=2.0, reconnect_max_s=1.0)
    reader = Reader(VideoSource(cam, stop=stop))
    reader.thread.start()
    try:
        reader.wait_frames(15, timeout=30)
        rtsp_server.stop_signal(signal.SIGSTOP)  # connection stays open, no more packets: a stall
        frozen_at = time.monotonic()
        deadline = frozen_at + 15
        while not any(not ok for _, ok, _ in reader.states) and time.monotonic() < deadline:
            time.sleep(0.05)
        lost = [s for s in reader.states if not s[1]]
        assert lost, "the stall was never noticed"
        assert "stalled" in lost[0][2]
        # Noticed by our watchdog after stall_timeout_s, not after FFmpeg's own (up to 3x longer) retries.
        assert lost[0][0] - frozen_at < 2.0 + 1.5, f"stall noticed after {lost[0][0] - frozen_at:.1f} s"
        count = len(reader.indexes)
        rtsp_server.stop_signal(signal.SIGCONT)
        reader.wait_frames(count + 20, timeout=45)
    finally:
        stop.set()
        reader.thread.join(20)
    assert reader.error is None and reader.source.reconnects >= 1


def test_camera_with_credentials_is_never_logged_with_them(rtsp_server, caplog):
    url = rtsp_server.url.replace("rtsp://", "rtsp://admin:hunter2@")
    stop = threading.Event()
    cam = CameraConfig(id="door", source=url.replace(str(rtsp_server.port), str(free_port())),
                       stall_timeout_s=1.0, reconnect_max_s=1.0)
    reader = Reader(VideoSource(cam, stop=stop))
    with caplog.at_level("DEBUG"):
        reader.thread.start()
        deadline = time.monotonic() + 20
        while len(reader.states) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()
        reader.thread.join(20)
    assert len(reader.states) >= 2, "expected failed connection attempts"
    assert "hunter2" not in caplog.text and "admin" not in caplog.text
    assert "rtsp://***@127.0.0.1" in caplog.text
    assert all("hunter2" not in why for _, _, why in reader.states)


def test_daemon_rtsp_outage_does_not_disturb_a_file_camera(rtsp_server, vtest_video, default_model_dir, tmp_path):
    """Two cameras in one real EdgeDaemon (real detector): an RTSP camera whose server dies and comes back,
    and a file camera whose frame rate must not change meanwhile. The cloud is unreachable (a closed port):
    events stay spooled, heartbeats fail, and nothing else is affected."""
    from vigint_edge.cloud.api_client import EdgeApiClient
    from vigint_edge.config import EdgeConfig
    from vigint_edge.daemon import EdgeDaemon
    from vigint_edge.detection.detector import load_detector
    from vigint_edge.delivery.publisher import EventPublisher
    from vigint_edge.delivery.spool import Spool
    from vigint_edge.status import MeteredDeliverer

    api_url = f"http://127.0.0.1:{free_port()}"
    config = EdgeConfig.model_validate({
        "device": {"tenant_id": "demo", "device_id": "nuc-1", "api_url": api_url},
        "cameras": [
            {"id": "door", "source": rtsp_server.url, "stall_timeout_s": 3.0, "reconnect_max_s": 2.0,
             "detect_fps": 2.0, "offline_alert_after_s": 300},
            {"id": "yard", "source": str(vtest_video), "detect_fps": 2.0},
        ],
        "spool": {"dir": str(tmp_path / "spool")},
        "status": {"port": 0},
    })
    detector = load_detector(default_model_dir / "model.xml", "CPU", num_threads=1)
    spool = Spool(config.spool.dir, max_bytes=config.spool.max_bytes)
    api = EdgeApiClient(api_url, "demo", "nuc-1", "s3cret-device-key")
    deliverer = MeteredDeliverer(spool, api, EventPublisher.from_api(api), key_version=1,
                                 secret="s3cret-device-key", backoff_max_s=2.0)
    daemon = EdgeDaemon(config=config, detector=detector, spool=spool, deliverer=deliverer, api=api)
    runner = threading.Thread(target=daemon.run, daemon=True)
    runner.start()

    def frames(cid):
        p = daemon.pipelines.get(cid)
        return p.stats.frames if p else 0

    def wait(pred, timeout, what):
        deadline = time.monotonic() + timeout
        while not pred():
            assert runner.is_alive(), "the daemon stopped"
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.1)

    try:
        wait(lambda: frames("door") >= 20 and frames("yard") >= 20, 60, "both cameras running")
        yard0, t0 = frames("yard"), time.monotonic()
        rtsp_server.kill()
        door_at_kill = frames("door")
        time.sleep(5.0)
        yard_rate_during_outage = (frames("yard") - yard0) / (time.monotonic() - t0)
        assert frames("door") <= door_at_kill + 8
        assert yard_rate_during_outage > 7.0, f"file camera slowed to {yard_rate_during_outage:.1f} fps (10 fps file)"
        rtsp_server.start()
        wait(lambda: frames("door") >= door_at_kill + 20, 40, "the RTSP camera to resume")
        status = daemon.status()
        assert status["cameras"]["door"]["reconnects"] >= 1
        assert status["cameras"]["yard"]["reconnects"] == 0
        assert status["cameras"]["door"]["health"]["state"] == "ok"
        assert daemon.status_server is not None
        base = f"http://127.0.0.1:{daemon.status_server.port}"
        metrics = urllib.request.urlopen(base + "/metrics", timeout=10).read().decode()
        assert 'vigint_camera_reconnects_total{camera="door"}' in metrics
        healthz = json.loads(urllib.request.urlopen(base + "/healthz", timeout=10).read())
        assert healthz["cameras"]["door"]["connected"] is True
    finally:
        daemon.stop.set()
        runner.join(60)
    assert not runner.is_alive()


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_rtsp_stream_is_remuxed_into_a_playable_clip_over_either_transport(rtsp_server, h264_clip, tmp_path,
                                                                           transport):
    """The camera's own H.264 over RTSP (interleaved in the TCP connection, or RTP over UDP) goes into an mp4
    without re-encoding: it starts at a keyframe, every packet is a frame, and the picture is the source's."""
    import av
    import numpy as np

    from vigint_edge.recording.clip import RemuxWriter

    stop = threading.Event()
    cam = CameraConfig(id="door", source=rtsp_server.url, rtsp_transport=transport, stall_timeout_s=5.0)
    source = VideoSource(cam, stop=stop, max_frames=60)
    writer = None
    for frame in source.frames():
        if writer is None and frame.key:
            writer = RemuxWriter(tmp_path / "clip.mp4", frame.stream)
        if writer is not None:
            writer.write_packets(frame.packets)
    assert source.codec == "h264" and writer is not None, "no keyframe in 6 s of stream"
    info = writer.close()
    with av.open(str(info.path)) as c:
        assert c.streams.video[0].codec_context.name == "h264"
        assert next(c.demux(video=0)).is_keyframe
    with av.open(str(info.path)) as c:
        pictures = [f.to_ndarray(format="bgr24") for f in c.decode(video=0)]
    assert len(pictures) == info.frames >= 20
    with av.open(str(h264_clip)) as c:
        source_pictures = [f.to_ndarray(format="bgr24") for f, _ in zip(c.decode(video=0), range(80))]
    best = max(np.corrcoef(pictures[0].ravel(), s.ravel())[0, 1] for s in source_pictures)
    assert best > 0.99, "the remuxed picture is not the camera's"
