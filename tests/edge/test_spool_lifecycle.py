"""The spool with version 2 messages: item order, lanes, the open-events journal, closing interrupted events,
eviction of clips then segments (never a message), refused puts. Real segments and clips (libx264, MPEG-TS)."""

from __future__ import annotations

import json
import logging

import pytest

from tests.edge.lifecycle_helpers import SyntheticEvent
from tests.edge.test_spool import make_event
from vigint_edge.event_model import segment_name
from vigint_edge.delivery.spool import Spool


def test_items_sort_by_event_then_seq_and_split_into_lanes(tmp_path):
    spool = Spool(tmp_path / "spool", 10**9)
    a = SyntheticEvent(spool, "demo", "nuc-1", "gate", tmp_path, seed=1)
    v1, clip, jpeg = make_event(tmp_path, 0)
    a.start()
    spool.put(v1, clip, jpeg)  # a health or recording event (version 1) between them
    for _ in range(10):
        a.update()  # seq 1..10: "00010" must sort after "00009"
    a.end()
    ids = [it.item_id for it in spool.pending()]
    assert ids == sorted(ids)
    mine = [i for i in ids if i.startswith(a.event_id)]
    assert mine == [f"{a.event_id}.{s:05d}" for s in range(12)]
    assert [it.item_id for it in spool.pending("bulk")] == sorted([a.messages[-1].item_id, v1.event_id])
    assert [it.item_id for it in spool.pending("live")] == mine[:-1]
    stats = spool.stats()
    assert (stats["items"], stats["live"], stats["bulk"]) == (13, 11, 2)


def test_the_live_lane_delivers_starts_and_alerts_before_a_backlog_of_updates(tmp_path):
    """A later event's start (and an update that brings an alert's snapshot) goes before an earlier event's
    segment updates: the alert waits for the start, not for the backlog."""
    spool = Spool(tmp_path / "spool", 10**9)
    a = SyntheticEvent(spool, "demo", "nuc-1", "gate", tmp_path / "a", seed=1)
    b = SyntheticEvent(spool, "demo", "nuc-1", "yard", tmp_path / "b", seed=2)
    a.start()
    for _ in range(4):
        a.update()
    b.start()
    flip = a.send("update", snapshot=True)  # the moment an event becomes an alert: it brings a snapshot
    live = [it.item_id for it in spool.pending("live")]
    assert live[:3] == [a.messages[0].item_id, flip.item_id, b.messages[0].item_id]  # urgent, oldest first
    assert live[3:] == [m.item_id for m in a.messages[1:5]]  # the backlog, oldest first
    assert [it.item_id for it in spool.pending()] == sorted(live)  # without a lane: plain order


def test_the_journal_follows_the_open_event_and_goes_with_its_end(tmp_path):
    spool = Spool(tmp_path / "spool", 10**9)
    ev = SyntheticEvent(spool, "demo", "nuc-1", "gate", tmp_path)
    ev.start()
    ev.update()
    ev.update()
    entry = json.loads((spool.open_dir / f"{ev.event_id}.json").read_bytes())
    assert entry["seq"] == 2 and entry["segments_spooled"] == ev.segments_spooled == 2
    assert spool.open_events() == [ev.event_id]
    ev.end()
    assert spool.open_events() == [] and spool.close_interrupted() == []


def test_close_interrupted_counts_items_newer_than_the_journal(tmp_path):
    """A crash between an item's rename and the journal write: the restart still sees that item."""
    root = tmp_path / "spool"
    spool = Spool(root, 10**9)
    ev = SyntheticEvent(spool, "demo", "nuc-1", "gate", tmp_path)
    ev.start()
    ev.update()
    journal = spool.open_dir / f"{ev.event_id}.json"
    older = journal.read_bytes()
    ev.update()
    journal.write_bytes(older)  # as the crash left it: the seq 2 item is whole, the journal says seq 1
    restarted = Spool(root, 10**9)
    [item] = restarted.close_interrupted()
    end = restarted.load_event(item)
    assert (end.seq, end.segment_count, end.interrupted, end.clip, end.segments) == (3, 2, True, None, [])
    assert end.labels == ev.messages[-1].labels and end.snapshot == ev.messages[0].snapshot
    assert restarted.open_events() == [] and Spool(root, 10**9).close_interrupted() == []


def test_a_journal_whose_end_is_spooled_only_goes(tmp_path):
    root = tmp_path / "spool"
    spool = Spool(root, 10**9)
    ev = SyntheticEvent(spool, "demo", "nuc-1", "gate", tmp_path)
    ev.start()
    journal = spool.open_dir / f"{ev.event_id}.json"
    left = journal.read_bytes()
    ev.end()
    journal.write_bytes(left)  # crash between the end's rename and the journal's removal
    assert Spool(root, 10**9).close_interrupted() == []
    assert not journal.exists()
    assert [it.item_id for it in spool.pending()] == [m.item_id for m in ev.messages]


@pytest.mark.slow
def test_eviction_takes_clips_first_then_segments_never_a_message(tmp_path, caplog):
    scratch = Spool(tmp_path / "scratch", 10**9)
    probe = SyntheticEvent(scratch, "demo", "nuc-1", "gate", tmp_path, size=(320, 240), seed=9)
    probe.start()
    for _ in range(3):
        probe.update()
    probe.end()
    one_event = scratch.stats()["bytes"]
    clip_bytes = probe.messages[-1].clip.bytes
    spool = Spool(tmp_path / "spool", int(one_event * 1.6))
    events = []
    with caplog.at_level(logging.WARNING, logger="vigint_edge.delivery.spool"):
        for seed in range(3):
            ev = SyntheticEvent(spool, "demo", "nuc-1", "gate", tmp_path, size=(320, 240), seed=seed)
            ev.start()
            for _ in range(3):
                ev.update()
            ev.end()
            events.append(ev)
    assert spool.stats()["bytes"] <= spool.max_bytes
    ids = {it.item_id for it in spool.pending()}
    assert ids == {m.item_id for ev in events for m in ev.messages}, "no message was evicted"
    for ev in events:  # every snapshot stays
        for m in ev.messages:
            own = f"snapshots/{m.seq:05d}.jpg"
            if m.snapshot is not None and m.snapshot.object.endswith(own):
                assert (spool.root / "ready" / m.item_id / own).exists()
    first_end = spool.root / "ready" / events[0].messages[-1].item_id
    assert not (first_end / "clip.mp4").exists(), "the oldest clip went first"
    assert (spool.root / "ready" / events[-1].messages[-1].item_id / "clip.mp4").exists()
    evicted = [(it.item_id, name) for it in spool.pending() for name in spool.load_state(it).evicted]
    clips_gone = [i for i, n in evicted if n == "clip.mp4"]
    segs_gone = [i for i, n in evicted if n.startswith("segments/")]
    assert clips_gone and clip_bytes > 0
    if segs_gone:  # segments only once no older clip was left
        assert all(events[-1].messages[-1].item_id != i for i in clips_gone)
        assert max(clips_gone) < events[-1].messages[-1].item_id
    for item_id, name in evicted:
        assert not (spool.root / "ready" / item_id / name).exists()
    assert all("evicted the" in r.getMessage() for r in caplog.records if "budget" in r.getMessage())


def test_put_message_refuses_files_that_do_not_match(tmp_path):
    spool = Spool(tmp_path / "spool", 10**9)
    ev = SyntheticEvent(spool, "demo", "nuc-1", "gate", tmp_path)
    start = ev.start()
    with pytest.raises(FileExistsError):
        spool.put_message(start, {"snapshots/00000.jpg": b"x" * start.snapshot.bytes})
    while ev.segmenter.count == 0:  # the encoder's lookahead holds packets back for a while
        ev.advance(0.1)
    seg = ev.segmenter.take_finished()[0]
    update = start.model_copy(update={"phase": "update", "seq": 1, "snapshot": start.snapshot})
    with pytest.raises(ValueError, match="brings"):
        spool.put_message(update, {segment_name(seg.index): seg.path})  # the message lists no segment
    assert [it.item_id for it in spool.pending()] == [start.item_id]
    assert list((spool.root / "tmp").iterdir()) == []
