"""vigint_edge.systemd.Notifier against a real AF_UNIX datagram socket, the way systemd listens on
$NOTIFY_SOCKET (sd_notify(3)): path and abstract addresses, the watchdog interval, and the no-op cases."""

from __future__ import annotations

import os
import socket
import uuid

import pytest

from vigint_edge.systemd import Notifier


@pytest.fixture
def listener(tmp_path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify"
    sock.bind(str(path))
    sock.settimeout(2)
    yield str(path), sock
    sock.close()


def _recv(sock) -> dict[str, str]:
    data = sock.recv(4096).decode()
    return dict(line.split("=", 1) for line in data.split("\n"))


def test_ready_status_watchdog_stopping_are_datagrams_of_key_value_lines(listener):
    path, sock = listener
    n = Notifier.from_env({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "60000000"})
    assert n.enabled and n.watchdog_interval_s == 30.0
    assert n.ready(status="watching 2 camera(s)")
    assert _recv(sock) == {"READY": "1", "STATUS": "watching 2 camera(s)"}
    assert n.watchdog()
    assert _recv(sock) == {"WATCHDOG": "1"}
    assert n.status("degraded: camera lobby offline")
    assert _recv(sock) == {"STATUS": "degraded: camera lobby offline"}
    assert n.stopping()
    assert _recv(sock) == {"STOPPING": "1"}


def test_abstract_socket_address():
    name = f"vigint-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2)
        assert Notifier(f"@{name}").ready()
        assert sock.recv(64) == b"READY=1"


def test_without_notify_socket_everything_is_a_no_op():
    n = Notifier.from_env({"WATCHDOG_USEC": "60000000"})
    assert not n.enabled
    assert n.watchdog_interval_s is None
    assert n.ready() is False and n.watchdog() is False


def test_watchdog_for_another_pid_or_malformed_is_disabled(listener):
    path, _ = listener
    assert Notifier.from_env({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "60000000",
                              "WATCHDOG_PID": str(os.getpid() + 1)}).watchdog_interval_s is None
    assert Notifier.from_env({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "60000000",
                              "WATCHDOG_PID": str(os.getpid())}).watchdog_interval_s == 30.0
    assert Notifier.from_env({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "soon"}).watchdog_interval_s is None


def test_unreachable_socket_is_logged_not_raised(tmp_path, caplog):
    n = Notifier(str(tmp_path / "nobody-listens"))
    assert n.ready() is False
    assert "sd_notify" in caplog.text


def test_a_listener_that_stops_reading_never_blocks_the_daemon(listener, caplog):
    """A unix datagram socket queues about 10 unread datagrams (net.unix.max_dgram_qlen); past that a blocking
    send waits for the reader forever, which hung the packaged daemon's watchdog thread in a test that read its
    pings only at the end. The send must give up instead (logged, False)."""
    import threading

    path, _ = listener
    n = Notifier(path)
    results: list[bool] = []
    sender = threading.Thread(target=lambda: results.extend(n.notify(watchdog=1) for _ in range(100)), daemon=True)
    sender.start()
    sender.join(30)
    assert not sender.is_alive(), "a notification blocked on a full socket"
    assert results[0] is True and results[-1] is False and len(results) == 100
    assert "sd_notify" in caplog.text
