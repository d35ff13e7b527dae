"""Spool: durability across restarts and crashes, ordering, eviction under the disk budget."""

from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from vigint_edge.event_model import (
    ClipRef,
    EdgeEvent,
    SnapshotRef,
    new_event_id,
    object_name,
)
from vigint_edge.delivery.spool import Spool, SpoolState

T0 = datetime(2026, 11, 22, 6, 0, tzinfo=timezone.utc)


def make_event(tmp_path: Path, i: int, clip_bytes: int = 4000, tenant="demo", device="nuc-1"):
    """An event whose clip and snapshot files really exist (random bytes stand in for the media)."""
    when = T0 + timedelta(seconds=i)
    eid = new_event_id(when)
    clip = tmp_path / f"src-{i}.mp4"
    clip.write_bytes(os.urandom(clip_bytes))
    jpeg = b"\xff\xd8" + os.urandom(500) + b"\xff\xd9"
    event = EdgeEvent(
        event_id=eid, tenant_id=tenant, device_id=device, camera_id="lobby", kind="detection",
        severity="alert", labels=["person"], start_time=when, end_time=when + timedelta(seconds=5),
        top_score=0.9, max_count={"person": 1},
        clip=ClipRef(object=object_name(tenant, device, eid, "clip.mp4"), bytes=clip_bytes,
                     sha256=hashlib.sha256(clip.read_bytes()).hexdigest(), duration_s=5.0, frames=50,
                     width=768, height=576, fps=10.0),
        snapshot=SnapshotRef.for_jpeg(jpeg, object_name(tenant, device, eid, "snapshot.jpg"), when),
    )
    return event, clip, jpeg


def test_put_survives_a_restart(tmp_path):
    root = tmp_path / "spool"
    event, clip, jpeg = make_event(tmp_path, 0)
    clip_data = clip.read_bytes()
    item = Spool(root, max_bytes=10**7).put(event, clip, jpeg)
    assert not clip.exists(), "the clip is moved into the spool"

    reopened = Spool(root, max_bytes=10**7)
    pending = reopened.pending()
    assert [p.event_id for p in pending] == [event.event_id]
    assert pending[0].path == item.path
    assert reopened.load_event(pending[0]) == event
    assert pending[0].clip_path.read_bytes() == clip_data
    assert pending[0].snapshot_path.read_bytes() == jpeg
    assert json.loads(pending[0].event_path.read_bytes())["event_id"] == event.event_id
    assert reopened.load_state(pending[0]) == SpoolState()
    assert reopened.stats()["items"] == 1
    assert reopened.stats()["bytes"] >= len(clip_data) + len(jpeg)


def test_half_written_item_from_a_crash_is_not_an_item_and_is_cleaned(tmp_path):
    root = tmp_path / "spool"
    Spool(root, max_bytes=10**7)
    event, _, jpeg = make_event(tmp_path, 0)
    # What a kill -9 in the middle of put() leaves: a tmp dir with some files, never renamed.
    half = root / "tmp" / event.event_id
    half.mkdir()
    (half / "event.json").write_bytes(event.to_message_bytes())
    (half / "clip.mp4").write_bytes(b"\x00" * 100)

    spool = Spool(root, max_bytes=10**7)
    assert spool.pending() == []
    assert list((root / "tmp").iterdir()) == []
    assert spool.stats() == {"items": 0, "live": 0, "bulk": 0, "bytes": 0, "failed": 0, "open_events": 0}


def test_state_is_saved_atomically_and_seen_after_restart(tmp_path):
    root = tmp_path / "spool"
    spool = Spool(root, max_bytes=10**7)
    event, clip, jpeg = make_event(tmp_path, 0)
    item = spool.put(event, clip, jpeg)
    spool.save_state(item, SpoolState(uploaded=["snapshot.jpg"], objects={"snapshot.jpg": "x"}))
    spool.update_state(item, lambda s: s.uploaded.append("clip.mp4"))
    # A stale temp file from a crash during save_state is ignored and removed on start.
    (item.path / "state.json.tmp").write_text("{garbage")
    again = Spool(root, max_bytes=10**7)
    state = again.load_state(again.pending()[0])
    assert state.uploaded == ["snapshot.jpg", "clip.mp4"]
    assert not (item.path / "state.json.tmp").exists()


def test_items_come_out_oldest_first(tmp_path):
    spool = Spool(tmp_path / "spool", max_bytes=10**7)
    events = [make_event(tmp_path, i) for i in (3, 1, 2, 0)]  # created in time order 3,1,2,0 ...
    for event, clip, jpeg in reversed(events):  # ... and put in yet another order
        spool.put(event, clip, jpeg)
    by_time = sorted(events, key=lambda e: e[0].start_time)
    assert [p.event_id for p in spool.pending()] == [e[0].event_id for e in by_time]


def test_eviction_deletes_oldest_clips_first_and_keeps_event_records(tmp_path):
    clip_bytes = 10_000
    # An item is ~11.5 kB (clip + snapshot + event.json + state.json), a clip-less one ~1.5 kB:
    # 40 kB hold three whole items plus the records of two whose clips went.
    spool = Spool(tmp_path / "spool", max_bytes=40_000)
    events = [make_event(tmp_path, i, clip_bytes) for i in range(5)]
    for event, clip, jpeg in events:
        spool.put(event, clip, jpeg)
        assert spool.stats()["bytes"] <= 40_000

    pending = spool.pending()
    assert [p.event_id for p in pending] == [e[0].event_id for e in events]  # every event kept
    have_clip = [p.clip_path.exists() for p in pending]
    assert have_clip == [False, False, True, True, True]
    for p in pending:
        assert p.snapshot_path.exists() and p.event_path.exists()
        assert spool.load_state(p).clip_evicted == (not p.clip_path.exists())
        assert spool.load_event(p).clip is not None  # the record is untouched; delivery nulls it


def test_a_clip_larger_than_the_budget_does_not_evict_others(tmp_path):
    spool = Spool(tmp_path / "spool", max_bytes=20_000)
    small, clip, jpeg = make_event(tmp_path, 0, 5_000)
    spool.put(small, clip, jpeg)
    big, big_clip, big_jpeg = make_event(tmp_path, 1, 50_000)
    item = spool.put(big, big_clip, big_jpeg)
    assert not big_clip.exists(), "the source clip is consumed even when it could not be kept"
    assert not item.clip_path.exists() and spool.load_state(item).clip_evicted
    assert spool.pending()[0].clip_path.exists()


def test_bad_puts_are_refused(tmp_path):
    spool = Spool(tmp_path / "spool", max_bytes=10**7)
    event, clip, jpeg = make_event(tmp_path, 0)
    with pytest.raises(ValueError, match="snapshot"):
        spool.put(event, clip, jpeg + b"x")
    with pytest.raises(ValueError, match="bytes"):
        clip.write_bytes(b"short")
        spool.put(event, clip, jpeg)
    with pytest.raises(ValueError, match="clip_path"):
        spool.put(event, None, jpeg)
    assert spool.pending() == [] and list((spool.root / "tmp").iterdir()) == []
    event2, clip2, jpeg2 = make_event(tmp_path, 1)
    spool.put(event2, clip2, jpeg2)
    _, clip3, _ = make_event(tmp_path, 2)
    with pytest.raises(FileExistsError):
        spool.put(event2, clip3, jpeg2)
    with pytest.raises(ValueError):
        Spool(tmp_path / "other", max_bytes=0)


def test_remove_and_move_to_failed(tmp_path):
    spool = Spool(tmp_path / "spool", max_bytes=10**7)
    items = [spool.put(*make_event(tmp_path, i)) for i in range(2)]
    spool.remove(items[0])
    failed = spool.move_to_failed(items[1], "HTTP 400 (bad file)")
    assert spool.pending() == []
    assert [f.event_id for f in spool.failed()] == [items[1].event_id]
    assert failed.clip_path.exists(), "a refused item is kept whole"
    assert spool.load_state(failed).last_error == "HTTP 400 (bad file)"
    assert spool.stats()["failed"] == 1 and spool.stats()["items"] == 0


def test_a_crash_during_removal_never_leaves_a_half_deleted_item(tmp_path, monkeypatch):
    import shutil

    import vigint_edge.delivery.spool as spool_mod

    root = tmp_path / "spool"
    spool = Spool(root, max_bytes=10**7)
    items = [spool.put(*make_event(tmp_path, i)) for i in range(2)]

    def crash(path, *a, **kw):  # the process dies while deleting files
        (Path(path) / "event.json").unlink()
        raise KeyboardInterrupt("killed")

    real_rmtree = shutil.rmtree
    monkeypatch.setattr(spool_mod.shutil, "rmtree", crash)
    with pytest.raises(KeyboardInterrupt):
        spool.remove(items[0])
    monkeypatch.setattr(spool_mod.shutil, "rmtree", real_rmtree)
    restarted = Spool(root, max_bytes=10**7)
    assert [p.event_id for p in restarted.pending()] == [items[1].event_id], "the removed item is gone whole"
    assert list((root / "tmp").iterdir()) == [], "leftovers are cleaned at start"


def _bytes_on_disk(spool: Spool) -> int:
    return sum(f.stat().st_size for base in (spool.ready_dir, spool.failed_dir) for f in base.rglob("*")
               if f.is_file())


def test_the_byte_count_follows_puts_removals_and_evictions_without_walking_the_spool(tmp_path, monkeypatch):
    """``stats()["bytes"]`` is the bytes in ready/ + failed/ after every kind of change, and a put reads the
    sizes of its own item only, not the whole spool's (a backlog of thousands of items after an outage)."""
    import vigint_edge.delivery.spool as spool_mod

    spool = Spool(tmp_path / "spool", max_bytes=60_000)
    events = [make_event(tmp_path, i, 5_000) for i in range(12)]
    items = [spool.put(*e) for e in events[:6]]
    assert spool.stats()["bytes"] == _bytes_on_disk(spool)
    spool.remove(items[0])
    failed = spool.move_to_failed(items[1], "refused")
    assert spool.stats()["bytes"] == _bytes_on_disk(spool)
    walked, checked = [], 0
    real = spool_mod._dir_bytes
    monkeypatch.setattr(spool_mod, "_dir_bytes", lambda p: walked.append(p) or real(p))
    for e in events[6:]:  # the later ones go over the budget: clips are evicted
        walked.clear()
        room = _bytes_on_disk(spool) + 8_000 <= 60_000  # an item is about 6.5 kB
        item = spool.put(*e)
        # Within the budget, but for the few bytes by which each eviction's mark grows a state.json.
        assert spool.stats()["bytes"] == _bytes_on_disk(spool) <= 60_000 + 100 * len(spool.pending())
        if room:
            assert walked == [item.path], "an item within the budget reads its own sizes only"
            checked += 1
    assert any(spool.load_state(it).clip_evicted for it in spool.pending()), "the budget was reached"
    assert checked >= 2, "puts with room were checked"
    spool.remove(failed)
    assert spool.stats()["bytes"] == _bytes_on_disk(spool)
