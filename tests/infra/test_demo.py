"""``make demo`` through its real entry point (``python -m infra.demo``) on a quiet video (nobody in it): a
correct run, not a failure. (A port it needs that is taken: ``test_stack_ports.py``.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from infra.local.stack import REPO, _alive, free_port

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


@pytest.mark.slow
def test_a_quiet_video_is_a_correct_run_no_events_no_alerts_exit_0(stack, quiet_video, default_model_dir, tmp_path):
    """The demo on the suite's running stack, as after ``make up`` (it reuses a running stack: the path where it
    checks only the edge's own port); its own directory and edge status port."""
    local = tmp_path / "local"
    local.mkdir()
    (local / "stack").symlink_to(stack.workdir, target_is_directory=True)
    status_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGINT_PORT_")}
    env["VIGINT_PORT_EDGE_STATUS"] = str(status_port)
    cmd = [sys.executable, "-m", "infra.demo", "--video", str(quiet_video), "--local-dir", str(local),
           "--timeout", "30"]
    dead = {part: pid for part, pid in stack.pids.items() if not _alive(pid)}
    assert not dead, f"the suite's stack lost {dead} before the demo ran"
    run = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=150)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    assert "local stack: already running, reusing it" in run.stdout, out
    assert "no one in view: no events, no alerts" in run.stdout
    assert "FAILED" not in out
    assert "edge daemon finished" in run.stdout and "(exit 0)" in run.stdout, "the edge really ran, and cleanly"
    assert f"serving http://127.0.0.1:{status_port}/healthz" in run.stdout, "its status endpoint on the port asked for"
    summary = json.loads((local / "demo" / "summary.json").read_text())
    assert summary["events"] == [] and summary["emails"] == []
    assert all(_alive(pid) for pid in stack.pids.values()), "the demo left the running stack running"
    _check_console(run.stdout, summary["console"], stack)


def _check_console(stdout: str, console: dict, stack) -> None:
    """The console part of the demo: its URL and one-time link printed and in the summary, the link answering
    200 from the running console (its page names the owner), and, once used, the overview showing the demo's
    named site with its camera."""
    import re

    import requests

    url = f"http://127.0.0.1:{stack.ports['console']}"
    assert console["url"] == url and console["email"] == "security@demo.example"
    link = console["signin_link"]
    assert re.fullmatch(re.escape(url) + r"/signin/link\?t=[A-Za-z0-9_-]{40,}", link), link
    assert url in stdout and link in stdout, "the console and its link are printed"
    browser = requests.Session()
    page = browser.get(link, timeout=10)
    assert page.status_code == 200 and "security@demo.example" in page.text and "Demo Site" in page.text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    used = browser.post(f"{url}/signin/link", data={"t": link.split("t=", 1)[1], "csrf_token": csrf},
                        headers={"Origin": url}, allow_redirects=False, timeout=10)
    assert used.status_code == 303, used.text
    home = browser.get(f"{url}/", timeout=10)
    assert home.status_code == 200
    assert console["site"]["name"] == "Demo street" and "Demo street" in home.text and "Europe/London" in home.text
    assert "Entrance" in home.text, "the demo's camera is on the overview, under its site"
    assert browser.get(link, timeout=10).status_code == 410, "the printed link works once"
