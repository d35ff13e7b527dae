"""``pipeline.run_optimistic``: lock-free read-modify-write against the real Firestore emulator."""

from __future__ import annotations

import threading
import uuid

import pytest


def _doc(fenv):
    from vigint import clients

    ref = clients.firestore().collection("optimistic-test").document(uuid.uuid4().hex)
    ref.set({"n": 0, "seen": []})
    return ref


def test_concurrent_read_modify_writes_lose_no_update(fenv):
    """8 threads x 5 increments read the count and write count + 1: a lost update (what a write without a
    precondition gives) would leave fewer than 40."""
    from vigint import pipeline

    ref = _doc(fenv)
    errors: list[BaseException] = []

    def bump(who: int) -> None:
        def txn(tx):
            data = tx.get(ref).to_dict()
            tx.update(ref, {"n": data["n"] + 1, "seen": [*data["seen"], who]})

        try:
            for _ in range(5):
                pipeline.run_optimistic(txn, what="bump", attempts=200)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=bump, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    data = ref.get().to_dict()
    assert data["n"] == 40
    assert sorted(data["seen"]) == sorted(i for i in range(8) for _ in range(5))


def test_a_document_read_as_missing_is_created_once(fenv):
    """Two writers that both read "missing" and then create: one wins, the other re-reads and sees it."""
    from vigint import clients, pipeline

    ref = clients.firestore().collection("optimistic-test").document(uuid.uuid4().hex)
    outcomes = []
    barrier = threading.Barrier(2)

    def make(who: str) -> None:
        first = [True]

        def txn(tx):
            snap = tx.get(ref)
            if first[0]:
                first[0] = False
                barrier.wait(10)  # both have read "missing" before either writes
            if snap.exists:
                return "found " + snap.to_dict()["by"]
            tx.set(ref, {"by": who, "nested": {"a": 1}}, merge=True)
            return "created"

        outcomes.append((who, pipeline.run_optimistic(txn, what="create")))

    threads = [threading.Thread(target=make, args=(w,)) for w in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    by = ref.get().to_dict()["by"]
    assert sorted(o for _, o in outcomes) == ["created", f"found {by}"]


def test_set_with_merge_on_an_existing_document_merges_nested_fields(fenv):
    from vigint import pipeline

    ref = _doc(fenv)
    ref.update({"m": {"keep": 1, "old": 2}})

    def txn(tx):
        tx.get(ref)
        tx.set(ref, {"m": {"old": 3, "new": 4}, "top": "x"}, merge=True)

    pipeline.run_optimistic(txn, what="merge")
    data = ref.get().to_dict()
    assert data["m"] == {"keep": 1, "old": 3, "new": 4} and data["top"] == "x"


def test_a_writer_that_always_loses_gives_in_progress(fenv):
    from vigint import pipeline

    ref = _doc(fenv)

    def txn(tx):
        data = tx.get(ref).to_dict()
        ref.update({"n": data["n"] + 100})  # someone else writes between our read and our commit, every time
        tx.update(ref, {"n": data["n"] + 1})

    with pytest.raises(pipeline.InProgress):
        pipeline.run_optimistic(txn, what="loser", attempts=3)
    assert ref.get().to_dict()["n"] == 300


def test_a_failed_follow_on_publish_releases_its_claim(fenv, monkeypatch):
    """A publish that fails after the claim must not leave the redelivery answering InProgress for the whole
    lease (the emulator's delivery attempts run out first and the follow-on would never go out)."""
    from google.api_core import exceptions as gexc

    from vigint import pipeline

    ref = _doc(fenv)
    real = pipeline.publish_follow_on

    def down(*_a, **_k):
        raise gexc.ServiceUnavailable("Pub/Sub is down")

    monkeypatch.setattr(pipeline, "publish_follow_on", down)
    with pytest.raises(gexc.ServiceUnavailable):
        pipeline.publish_once(ref, "published.test", "events-ingested", "t", "e")
    monkeypatch.setattr(pipeline, "publish_follow_on", real)
    assert pipeline.publish_once(ref, "published.test", fenv.topics["ingested"], "t", "e") is True
    assert ref.get().to_dict()["published"]["test"] is True
