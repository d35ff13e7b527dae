"""``make up`` / ``make demo`` check every port before they start anything: a port in use (held here by a
real listening socket) stops them at once, naming the port, the process holding it and the variable that
moves it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from infra.local.ports import is_free
from infra.local.stack import PARTS, REPO, free_port


def _env(ports: dict[str, int]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGINT_PORT_")}
    env.update({f"VIGINT_PORT_{part.upper()}": str(port) for part, port in ports.items()})
    return env


def _held() -> socket.socket:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    return s


@pytest.mark.parametrize("part", ["firestore", "edge_api"])
def test_up_stops_before_starting_anything_when_a_port_is_taken(tmp_path, part):
    ports = {p: free_port() for p in PARTS}
    workdir = tmp_path / "stack"
    with _held() as held:
        ports[part] = held.getsockname()[1]
        run = subprocess.run([sys.executable, "-m", "infra.local.stack", "up", "--workdir", str(workdir)],
                             env=_env(ports), cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1, run.stdout + run.stderr
    port = ports[part]
    assert f"port {port} ({part}) is already in use by pid {os.getpid()} (" in run.stderr, run.stderr
    assert "pytest" in run.stderr, "the holder's command line is shown"
    assert f"VIGINT_PORT_{part.upper()}=PORT" in run.stderr
    assert "Traceback" not in run.stderr
    # Nothing started: every part writes its log under the workdir, which was not even created; no port
    # of the stack is bound.
    assert not workdir.exists()
    assert all(is_free(p) for name, p in ports.items() if name != part)


def test_up_refuses_one_port_given_to_two_parts_and_a_port_that_is_not_a_number(tmp_path):
    ports = {p: free_port() for p in PARTS}
    ports["alert"] = ports["ingest"]
    run = subprocess.run([sys.executable, "-m", "infra.local.stack", "up", "--workdir", str(tmp_path / "s")],
                         env=_env(ports), cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1
    assert (f"port {ports['ingest']} is given to both ingest and alert (VIGINT_PORT_INGEST, VIGINT_PORT_ALERT)"
            in run.stderr), run.stderr
    env = {**_env({p: free_port() for p in PARTS}), "VIGINT_PORT_SMTP": "25x"}
    run = subprocess.run([sys.executable, "-m", "infra.local.stack", "up", "--workdir", str(tmp_path / "s")],
                         env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and "VIGINT_PORT_SMTP='25x' is not a TCP port" in run.stderr, run.stderr
    assert not (tmp_path / "s").exists()


def test_demo_stops_before_starting_anything_when_the_edge_status_port_is_taken(tmp_path):
    ports = {p: free_port() for p in PARTS}
    local = tmp_path / "local"
    with _held() as held:
        ports["edge_status"] = held.getsockname()[1]
        run = subprocess.run([sys.executable, "-m", "infra.demo", "--local-dir", str(local)],
                             env=_env(ports), cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1, run.stdout + run.stderr
    assert (f"port {ports['edge_status']} (edge_status) is already in use by pid {os.getpid()} (" in run.stderr
            and "VIGINT_PORT_EDGE_STATUS=PORT" in run.stderr), run.stderr
    assert "== assets" not in run.stdout and not local.exists(), "nothing fetched, started or written"
    assert all(is_free(p) for name, p in ports.items() if name != "edge_status")
