"""``make demo``'s verdicts through its real entry point (``python -m infra.demo``), on its own ports and
directory: a quiet video (nobody in it) is a correct run, and a port it needs that is taken stops it at once."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from infra.local.stack import PARTS, REPO, free_port

SECONDS, FPS = 6, 10


@pytest.fixture(scope="module")
def quiet_video(vtest_video, tmp_path_factory) -> Path:
    """``SECONDS`` s of vtest.avi's street with nobody in it, as a camera sends it (H.264, 640x456, 10 fps): the
    per-pixel median of 50 frames spread over the clip (people walk on, the background stays), cropped to
    leave out the two parked vehicles (the detector rightly finds them), with a little sensor noise per frame."""
    import av
    import numpy as np

    with av.open(str(vtest_video)) as c:
        frames = [f.to_ndarray(format="rgb24")[120:576, 0:640] for i, f in enumerate(c.decode(video=0)) if i % 16 == 0]
    street = np.median(np.stack(frames), axis=0)
    rng = np.random.default_rng(7)
    path = tmp_path_factory.mktemp("quiet") / "quiet-street.mp4"
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = street.shape[1], street.shape[0], "yuv420p"
        for _ in range(SECONDS * FPS):
            img = np.clip(street + rng.normal(0, 1.5, street.shape), 0, 255).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def _demo_env(ports: dict[str, int]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGINT_PORT_") and not k.endswith("_EMULATOR_HOST")}
    env.update({f"VIGINT_PORT_{part.upper()}": str(port) for part, port in ports.items()})
    return env


@pytest.mark.slow
def test_a_quiet_video_is_a_correct_run_no_events_no_alerts_exit_0(quiet_video, default_model_dir, tmp_path):
    ports = {p: free_port() for p in [*PARTS, "edge_status"]}
    local = tmp_path / "local"
    cmd = [sys.executable, "-m", "infra.demo", "--video", str(quiet_video), "--local-dir", str(local),
           "--timeout", "30"]
    try:
        run = subprocess.run(cmd, env=_demo_env(ports), cwd=REPO, capture_output=True, text=True, timeout=150)
    finally:
        subprocess.run([sys.executable, "-m", "infra.local.stack", "down", "--workdir", str(local / "stack")],
                       cwd=REPO, capture_output=True, timeout=60)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    assert "no one in view: no events, no alerts" in run.stdout
    assert "FAILED" not in out
    assert "edge daemon finished" in run.stdout and "(exit 0)" in run.stdout, "the edge really ran, and cleanly"
    config = (local / "demo" / "config.yaml").read_text()
    assert f"port: {ports['edge_status']}" in config, "the edge's status endpoint is on the port asked for"
    summary = (local / "demo" / "summary.json").read_text()
    assert '"events": []' in summary and '"emails": []' in summary
