"""Delivery lanes on the real local stack (edge_api, fake-gcs-server, the Pub/Sub emulator): a start is not held
back by a clip upload that stalls (a real HTTP proxy that holds the PUT), each lane keeps its order, and a
network cut in the middle of an event loses and reorders nothing."""

from __future__ import annotations

import contextlib
import hashlib
import json
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator

import pytest
import requests

from tests.edge.test_durability import TcpForwarder
from tests.edge.lifecycle_helpers import (QuietHandler, SyntheticEvent, edge_events_pull, local_http_server,
                                        provision_device, pull_messages)
from tests.e2e.conftest import wait_for
from vigint_edge.cloud.api_client import EdgeApiClient
from vigint_edge.delivery.publisher import EventPublisher
from vigint_edge.delivery.spool import Spool
from vigint_edge.status import MeteredDeliverer

pytestmark = pytest.mark.slow


@pytest.fixture
def device(stack):
    return provision_device(stack, "l")


@pytest.fixture
def subscription(stack):
    with edge_events_pull(stack, "test-lanes") as pull:
        yield pull


def lane_deliverer(api_url: str, creds: dict, spool: Spool, lane: str, session=None) -> MeteredDeliverer:
    api = EdgeApiClient(api_url, creds["tenant_id"], creds["device_id"], creds["secret"], max_attempts=2,
                        backoff_initial_s=0.05, backoff_max_s=0.2)
    return MeteredDeliverer(spool, api, EventPublisher.from_api(api, timeout_s=20), creds["key_version"],
                            creds["secret"], session=session, lane=lane, max_attempts=2, backoff_initial_s=0.05,
                            backoff_max_s=0.5)


@contextlib.contextmanager
def lane_threads(spool: Spool, deliverers, pass_s: float) -> Iterator[list[threading.Thread]]:
    """One daemon thread per deliverer, running ``dl.run(stop, pass_s)``, not yet started (the caller starts
    them, in its own order); the spool wakes every deliverer for its lane on each new item. On leaving: stop,
    and each thread joined (30 s at most)."""
    deliverers = tuple(deliverers)
    spool.add_listener(lambda item: [dl.wake(item.lane) for dl in deliverers])
    stop = threading.Event()
    threads = [threading.Thread(target=dl.run, args=(stop, pass_s), daemon=True) for dl in deliverers]
    try:
        yield threads
    finally:
        stop.set()
        for th in threads:
            th.join(30)


class StallingProxy:
    """A real HTTP forward proxy: PUTs whose path contains ``hold`` wait until ``release()``; everything else
    is forwarded at once."""

    def __init__(self, hold: str) -> None:
        self.holding = threading.Event()
        self.released = threading.Event()
        self.held_paths: list[str] = []
        outer = self

        class Handler(QuietHandler):
            protocol_version = "HTTP/1.1"

            def do_PUT(self):  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if hold in self.path:
                    outer.held_paths.append(self.path.split("?")[0])
                    outer.holding.set()
                    outer.released.wait(60)
                req = urllib.request.Request(self.path, data=body, method="PUT",
                                             headers={k: v for k, v in self.headers.items()
                                                      if k.lower() not in ("host", "proxy-connection")})
                try:
                    with urllib.request.urlopen(req, timeout=30) as resp:
                        status, data = resp.status, resp.read()
                except urllib.error.HTTPError as err:
                    status, data = err.code, err.read()
                self.reply(status, data)

        self.httpd, self.url = local_http_server(Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def release(self) -> None:
        self.released.set()

    def close(self) -> None:
        self.released.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def _seq_order(messages, tenant) -> list[tuple[str, int]]:
    """(event_id, seq) of the tenant's messages, in publish order (the emulator's ids increase)."""
    mine = [m for m in messages if m.attributes.get("tenant_id") == tenant]
    return [(m.attributes["event_id"], int(m.attributes["seq"])) for m in sorted(mine, key=lambda m: int(m.message_id))]


def test_a_start_is_delivered_while_the_bulk_lane_is_stuck_on_a_clip(stack, device, subscription, tmp_path):
    from vigint.device_keys import verify

    subscriber, sub = subscription
    t, d = device["tenant_id"], device["device_id"]
    spool = Spool(tmp_path / "spool", 10**9)
    first = SyntheticEvent(spool, t, d, "gate", tmp_path, size=(640, 480), seed=1)
    first.start()
    first.update()
    first.end()  # a bulk item: its clip is the one that stalls
    proxy = StallingProxy(hold=f"{first.event_id}/clip.mp4")
    session = requests.Session()
    session.trust_env = False
    session.proxies = {"http": proxy.url}
    bulk = lane_deliverer(stack.urls["edge_api"], device, spool, "bulk", session=session)
    live = lane_deliverer(stack.urls["edge_api"], device, spool, "live")
    with contextlib.closing(proxy), lane_threads(spool, (bulk, live), 5.0) as threads:
        threads[0].start()
        assert proxy.holding.wait(30), "the bulk lane never started the clip upload"
        threads[1].start()
        second = SyntheticEvent(spool, t, d, "gate", tmp_path, seed=2)
        spooled_at = time.monotonic()
        second.start()
        second.update()
        live_ids = [(first.event_id, 0), (first.event_id, 1), (second.event_id, 0), (second.event_id, 1)]
        got = pull_messages(subscriber, sub, lambda ms: set(live_ids) <= set(_seq_order(ms, t)))
        assert time.monotonic() - spooled_at < 60
        assert not proxy.released.is_set() and proxy.held_paths, "the clip upload was still held meanwhile"
        order = _seq_order(got, t)
        assert sorted(order) == sorted(live_ids), "the live lane published all of these, the stuck end not at all"
        for ev in (first.event_id, second.event_id):  # a start may overtake another event's updates, but each
            assert [s for e, s in order if e == ev] == [0, 1]  # event's own messages stay in seq order
        second.end()
        proxy.release()
        got += pull_messages(subscriber, sub, lambda ms: len(_seq_order(got + ms, t)) == 6)
        wait_for(lambda: spool.pending() == [], timeout=30, what="the spool to drain")
    order = _seq_order(got, t)
    ends = [(e, s) for e, s in order if s == 2]
    assert ends == [(first.event_id, 2), (second.event_id, 2)], "the bulk lane kept its order too"
    assert len(order) == len(set(order)) == 6
    for m in got:
        assert m.attributes["schema_version"] == "2" and m.attributes["phase"] in ("start", "update", "end")
        assert verify(device["secret"], m.data, m.attributes["signature"])
        body = json.loads(m.data)
        assert body["sent_at"] is not None and body["seq"] == int(m.attributes["seq"])
    assert spool.failed() == [] and spool.open_events() == []


def test_live_deliverers_side_by_side_keep_each_events_order(stack, device, subscription, tmp_path):
    """Two deliverers of the live lane (the daemon runs ``LIVE_DELIVERERS``): while one is stuck on an event's
    start (its snapshot PUT held by the proxy), the other delivers another camera's start and update at once,
    and never the stuck event's update before its start."""
    subscriber, sub = subscription
    t, d = device["tenant_id"], device["device_id"]
    spool = Spool(tmp_path / "spool", 10**9)
    first = SyntheticEvent(spool, t, d, "gate", tmp_path, seed=1)
    first.start()
    first.update()
    proxy = StallingProxy(hold=f"{first.event_id}/snapshots/")

    def proxied() -> requests.Session:
        session = requests.Session()
        session.trust_env = False
        session.proxies = {"http": proxy.url}
        return session

    lives = [lane_deliverer(stack.urls["edge_api"], device, spool, "live", session=proxied()) for _ in range(2)]
    with contextlib.closing(proxy), lane_threads(spool, lives, 5.0) as threads:
        for th in threads:
            th.start()
        assert proxy.holding.wait(30), "no deliverer started the first start's snapshot upload"
        second = SyntheticEvent(spool, t, d, "door", tmp_path, seed=2)
        second.start()
        second.update()
        theirs = {(second.event_id, 0), (second.event_id, 1)}
        got = pull_messages(subscriber, sub, lambda ms: theirs <= set(_seq_order(ms, t)))
        assert not proxy.released.is_set() and len(proxy.held_paths) == 1, "the first start was held meanwhile"
        assert [e for e, _ in _seq_order(got, t) if e == first.event_id] == [], "its update waited for it"
        proxy.release()
        got += pull_messages(subscriber, sub, lambda ms: len(_seq_order(got + ms, t)) == 4)
        wait_for(lambda: spool.pending() == [], timeout=30, what="the spool to drain")
    order = _seq_order(got, t)
    assert [s for e, s in order if e == first.event_id] == [0, 1] and len(order) == len(set(order)) == 4
    assert sum(dl.stats()["delivered"] for dl in lives) == 4 and spool.failed() == []


class CuttableLink:
    """127.0.0.1:``port`` forwarded to ``target``; ``cut()`` closes every open connection and refuses new ones
    (a network going down under open keep-alive connections); ``restore()`` brings it back."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.up = threading.Event()
        self.up.set()
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(32)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            if not self.up.is_set():
                client.close()
                continue
            upstream = socket.create_connection(self.target, timeout=10)
            with self.lock:
                self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    _pump = staticmethod(TcpForwarder._pump)  # both ways until either side closes

    def cut(self) -> None:
        self.up.clear()
        with self.lock:
            for s in self.conns:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self.conns.clear()

    def restore(self) -> None:
        self.up.set()

    def close(self) -> None:
        self.cut()
        self.sock.close()


def test_a_network_cut_mid_event_loses_and_reorders_nothing(stack, device, subscription, tmp_path):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    subscriber, sub = subscription
    t, d = device["tenant_id"], device["device_id"]
    host_port = stack.urls["edge_api"].split("//", 1)[1].split("/", 1)[0]
    host, port = host_port.rsplit(":", 1)
    link = CuttableLink((host, int(port)))
    api_url = stack.urls["edge_api"].replace(host_port, f"127.0.0.1:{link.port}")
    spool = Spool(tmp_path / "spool", 10**9)
    lanes = {lane: lane_deliverer(api_url, device, spool, lane) for lane in ("live", "bulk")}
    with contextlib.closing(link), lane_threads(spool, lanes.values(), 0.2) as threads:
        for th in threads:
            th.start()
        ev = SyntheticEvent(spool, t, d, "yard", tmp_path, seed=3)
        ev.start()
        ev.update()
        got = pull_messages(subscriber, sub, lambda ms: len(_seq_order(ms, t)) == 2)
        link.cut()
        for _ in range(3):
            ev.update()
        ev.end()
        wait_for(lambda: lanes["live"].stats()["delivery_retries"] >= 2, timeout=30, what="failed live passes")
        assert [it.item_id for it in spool.pending()] == [m.item_id for m in ev.messages[2:]], \
            "while cut, everything waits in the spool"
        link.restore()
        wait_for(lambda: spool.pending() == [], timeout=90, what="the backlog to drain")
        got += pull_messages(subscriber, sub, lambda ms: len(_seq_order(got + ms, t)) >= len(ev.messages))
    order = _seq_order(got, t)
    assert sorted(set(order)) == [(ev.event_id, m.seq) for m in ev.messages], "every message delivered"
    first_time = list(dict.fromkeys(order))
    live_seqs = [s for _, s in first_time if s != ev.messages[-1].seq]
    assert live_seqs == sorted(live_seqs), "the live lane delivered in order"
    bucket = storage.Client(project=stack.project, credentials=AnonymousCredentials()).bucket(stack.bucket)
    segments = [s for m in ev.messages for s in m.segments]
    assert [s.index for s in segments] == list(range(ev.messages[-1].segment_count))
    for seg in segments:
        blob = bucket.blob(seg.object)
        assert hashlib.sha256(blob.download_as_bytes()).hexdigest() == seg.sha256, seg.object
    for m in ev.messages:
        if m.snapshot is not None and m.snapshot.object.endswith(f"snapshots/{m.seq:05d}.jpg"):
            assert bucket.blob(m.snapshot.object).exists()
    assert bucket.blob(ev.messages[-1].clip.object).exists()
