"""Durable on-disk spool of event messages waiting to be delivered to the cloud.

Layout under ``root``::

    tmp/<item_id>/       an item being written (deleted on start: a crash left it half done)
    ready/<item_id>/     complete items, delivered oldest first (ids sort by time, then message seq)
        event.json       the message (compact JSON, written once): a version 1 ``EdgeEvent`` or a
                         version 2 ``LifecycleMessage``
        clip.mp4         the clip (absent if there was none or it was evicted)
        snapshot.jpg     version 1: the snapshot (absent if the event has none)
        snapshots/NNNNN.jpg   version 2: the snapshot this message brings (NNNNN = its seq), if any
        segments/NNNNN.ts     version 2: the HLS segments this message brings (absent if evicted)
        state.json       delivery progress (``SpoolState``), replaced atomically
    failed/<item_id>/    items the cloud refused for good (kept for an operator, never deleted here)
    open/<event_id>.json the latest spooled state of each open version 2 event (the journal), replaced
                         atomically on each start/update and removed when its end is spooled

Item ids: a version 1 event's item is its ``event_id``; a version 2 message's is ``{event_id}.{seq:05d}``
(``LifecycleMessage.item_id``). Event ids are time-ordered strings of one length, so a plain sort orders
items by (event, seq).

An item appears in ``ready/`` only by ``rename`` of a directory whose files and the directory itself were
fsynced first, and the rename is fsynced too, so after a crash, ``kill -9`` or power loss an item is either
whole in ``ready/`` or not there at all.

Lanes: ``live`` items have no ``clip.mp4`` (starts, updates, health events, messages whose clip was
evicted), ``bulk`` items have one; each lane is delivered oldest first by its own deliverer, so a big clip
never holds back a ``start``. ``add_listener`` callbacks hear of every new item (the daemon wakes
that lane's deliverer at once).

Disk use is bounded by ``max_bytes`` (all files under ``ready/`` and ``failed/``). When a new item would go
over, the oldest clips are deleted first, then the oldest segments; a message (and its snapshot) is never
deleted: it is delivered without the evicted files (``SpoolState.evicted``; the clip ref becomes null, the
segment refs are dropped).

After a crash mid-event, ``close_interrupted`` (called once at daemon start, before delivery) turns every
journal entry into that event's ``end`` with ``interrupted: true``, ``clip: null``, ``segment_count`` = the
segments spooled, the next seq and no new segment.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

from vigint_edge.recording.clip import fsync_dir
from vigint_edge.event_model import (CLIP_NAME, SNAPSHOT_NAME, EdgeEvent, LifecycleMessage, load_message,
                                     segment_name, snapshot_name)

log = logging.getLogger(__name__)

__all__ = ["LANES", "Spool", "SpoolItem", "SpoolState"]

EVENT_FILE = "event.json"
STATE_FILE = "state.json"
LANES = ("live", "bulk")
Lane = Literal["live", "bulk"]
Message = Union[EdgeEvent, LifecycleMessage]


class SpoolState(BaseModel):
    """Delivery progress of one item (``state.json``).

    Attributes:
        uploaded: file names (``clip.mp4``, ``snapshot.jpg``, ``segments/NNNNN.ts``, ...) already in GCS.
        objects: file name -> GCS object name it was uploaded to.
        published: the event message was accepted by Pub/Sub.
        message_id: Pub/Sub message id of that publish.
        clip_evicted: the clip was deleted to keep the spool within ``max_bytes``.
        evicted: every file name deleted to keep within ``max_bytes`` (clip and segments).
        sent_at: RFC 3339 ``sent_at`` of a publish whose outcome is unknown (set just before publishing,
            cleared when Pub/Sub refused it): a restart after a crash re-publishes the very same bytes.
        attempts: delivery attempts that ended in an error.
        last_error: the last error (no secrets or URLs).
        md5: file name -> base64 MD5 of the file as uploaded (or found stored); the message carries it.
        conflicts: file name -> why the object already stored under its name is not this file (other size
            or MD5): the message is still published, with this file's own size and hashes, and the cloud
            flags the event's evidence as not matching.
    """

    model_config = ConfigDict(extra="ignore")

    uploaded: list[str] = Field(default_factory=list)
    objects: dict[str, str] = Field(default_factory=dict)
    published: bool = False
    message_id: str | None = None
    clip_evicted: bool = False
    evicted: list[str] = Field(default_factory=list)
    sent_at: str | None = None
    attempts: int = 0
    last_error: str | None = None
    md5: dict[str, str] = Field(default_factory=dict)
    conflicts: dict[str, str] = Field(default_factory=dict)


@dataclass(frozen=True)
class SpoolItem:
    """One spooled message (a directory under ``ready/`` or ``failed/``).

    Attributes:
        item_id: ``event_id`` (version 1) or ``{event_id}.{seq:05d}`` (version 2).
        path: the item's directory.
    """

    item_id: str
    path: Path

    @property
    def event_id(self) -> str:
        return self.item_id.split(".", 1)[0]

    @property
    def seq(self) -> int | None:
        """The message seq of a version 2 item, None for version 1."""
        _, _, seq = self.item_id.partition(".")
        return int(seq) if seq else None

    @property
    def event_path(self) -> Path:
        return self.path / EVENT_FILE

    @property
    def clip_path(self) -> Path:
        return self.path / CLIP_NAME

    @property
    def snapshot_path(self) -> Path:
        return self.path / SNAPSHOT_NAME

    @property
    def state_path(self) -> Path:
        return self.path / STATE_FILE

    @property
    def urgent(self) -> bool:
        """The item brings a snapshot: a ``start``, an update that made the event an alert, or a health event
        (version 1 with ``snapshot.jpg``): the messages an alert waits for, delivered first in their lane."""
        return (self.path / "snapshots").is_dir() or self.snapshot_path.exists()

    @property
    def lane(self) -> Lane:
        """``bulk`` while the item holds a clip, else ``live``."""
        return "bulk" if self.clip_path.exists() else "live"


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _dir_bytes(path: Path) -> int:
    total = 0
    for dirpath, _, names in os.walk(path):
        for name in names:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except FileNotFoundError:
                pass
    return total


def _item_files(message: LifecycleMessage) -> dict[str, int]:
    """File name -> size in bytes of the files a version 2 message brings (by its refs)."""
    files = {segment_name(seg.index): seg.bytes for seg in message.segments}
    own = snapshot_name(message.seq)
    if message.snapshot is not None and message.snapshot.object.endswith("/" + own):
        files[own] = message.snapshot.bytes
    if message.clip is not None:
        files[CLIP_NAME] = message.clip.bytes
    return files


class Spool:
    """The durable event spool.

    Thread-safe: the event lifecycle ``put``s while the deliverers read, update and remove items.

    Args:
        root: spool directory (created if missing).
        max_bytes: disk budget in bytes for ``ready/`` + ``failed/``.

    Raises:
        ValueError: ``max_bytes`` is not positive.
    """

    def __init__(self, root: Path, max_bytes: int) -> None:
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        self.root = Path(root)
        self.max_bytes = int(max_bytes)
        self.tmp_dir = self.root / "tmp"
        self.ready_dir = self.root / "ready"
        self.failed_dir = self.root / "failed"
        self.open_dir = self.root / "open"
        self._lock = threading.RLock()
        self._listeners: list[Callable[[SpoolItem], None]] = []
        self._claimed: set[str] = set()
        # Bytes in ready/ + failed/, kept up to date by every put, removal and eviction: a put must not walk
        # the whole spool (after an hour offline with four cameras it holds thousands of items; one walk of
        # 3,000 items took 0.4 s here, under the lock). None until first needed.
        self._used: int | None = None
        for d in (self.tmp_dir, self.ready_dir, self.failed_dir, self.open_dir):
            d.mkdir(parents=True, exist_ok=True)
        self._clean_leftovers()

    # ------------------------------------------------------------------------------------------ start
    def _clean_leftovers(self) -> None:
        for entry in self.tmp_dir.iterdir():
            log.warning("spool: removing incomplete item %s left by an earlier crash", entry.name)
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        fsync_dir(self.tmp_dir)
        for base in (self.ready_dir, self.failed_dir):
            for stale in base.glob(f"*/{STATE_FILE}.tmp"):
                stale.unlink()
        for stale in self.open_dir.glob("*.tmp"):
            stale.unlink()

    def add_listener(self, callback: Callable[[SpoolItem], None]) -> None:
        """``callback(item)`` is called (outside the spool lock) after each new item is in ``ready/``."""
        self._listeners.append(callback)

    def _notify(self, item: SpoolItem) -> None:
        for callback in list(self._listeners):
            try:
                callback(item)
            except Exception:  # noqa: BLE001 - a listener must never break a put
                log.exception("spool: listener failed")

    # ------------------------------------------------------------------------------------------- put
    def put(self, event: EdgeEvent, clip_path: Path | None, snapshot_jpeg: bytes | None) -> SpoolItem:
        """Stores a finished version 1 event durably; the clip file is moved in.

        Args:
            event: the event (its ``clip``/``snapshot`` refs describe the files given here).
            clip_path: the finished clip (moved, not copied, when on the same file system); None only if
                ``event.clip`` is None.
            snapshot_jpeg: JPEG bytes; None only if ``event.snapshot`` is None.

        Returns:
            The new item, already in ``ready/``.

        Raises:
            FileExistsError: an item with this event id is already spooled.
            ValueError: files missing, or their size/hash disagree with the event's refs.
        """
        if (event.clip is None) != (clip_path is None):
            raise ValueError("clip_path must be given exactly when event.clip is set")
        if (event.snapshot is None) != (snapshot_jpeg is None):
            raise ValueError("snapshot_jpeg must be given exactly when event.snapshot is set")
        files: dict[str, Path | bytes] = {}
        if clip_path is not None:
            size = Path(clip_path).stat().st_size
            if size != event.clip.bytes:
                raise ValueError(f"clip {clip_path} has {size} bytes, event.clip.bytes says {event.clip.bytes}")
            files[CLIP_NAME] = Path(clip_path)
        if snapshot_jpeg is not None:
            if len(snapshot_jpeg) != event.snapshot.bytes or \
                    hashlib.sha256(snapshot_jpeg).hexdigest() != event.snapshot.sha256:
                raise ValueError("snapshot bytes do not match event.snapshot (bytes/sha256)")
            files[SNAPSHOT_NAME] = snapshot_jpeg
        expected = {CLIP_NAME: event.clip.bytes} if event.clip else {}
        return self._put(event.event_id, event, files, expected)

    def put_message(self, message: LifecycleMessage, files: dict[str, Path | bytes]) -> SpoolItem:
        """Stores one version 2 message durably, with the files it brings, and updates the open-events
        journal (written for a start/update, removed for the end).

        Args:
            message: the message (``sent_at`` unset: delivery sets it).
            files: file name (``clip.mp4``, ``snapshots/{seq:05d}.jpg``, ``segments/{index:05d}.ts``) -> a
                finished file (moved in) or bytes (written); exactly the files the message's refs bring.

        Returns:
            The new item, already in ``ready/``.

        Raises:
            FileExistsError: this (event_id, seq) is already spooled.
            ValueError: files missing or extra, or their sizes disagree with the refs.
        """
        expected = _item_files(message)
        if set(files) != set(expected):
            raise ValueError(f"message {message.item_id} brings {sorted(expected)}, files given: {sorted(files)}")
        for name, data in files.items():
            size = len(data) if isinstance(data, bytes) else Path(data).stat().st_size
            if size != expected[name]:
                raise ValueError(f"{name} has {size} bytes, the message says {expected[name]}")
        return self._put(message.item_id, message, files, expected)

    def _put(self, item_id: str, message: Message, files: dict[str, Path | bytes],
             sizes: dict[str, int]) -> SpoolItem:
        data = message.to_message_bytes()
        state = SpoolState()
        incoming = len(data) + sum(len(v) if isinstance(v, bytes) else sizes.get(k, 0) for k, v in files.items())
        with self._lock:
            final = self.ready_dir / item_id
            if final.exists() or (self.failed_dir / item_id).exists():
                raise FileExistsError(f"item {item_id} is already spooled")
            clip_bytes = sizes.get(CLIP_NAME, 0) if CLIP_NAME in files else 0
            if clip_bytes and incoming > self.max_bytes:
                # The clip can never fit: evicting older clips for it would only lose them too.
                log.warning("spool: the clip of %s (%d bytes) is larger than the whole %d-byte budget: "
                            "keeping the message without it", item_id, clip_bytes, self.max_bytes)
                self._mark_evicted(state, CLIP_NAME)
                incoming -= clip_bytes
            self._make_room(incoming)
            if clip_bytes and not state.clip_evicted and self._used_bytes() + incoming > self.max_bytes:
                incoming -= clip_bytes
                log.warning("spool: no room for the clip of %s (%d bytes, budget %d): keeping the message "
                            "without it", item_id, clip_bytes, self.max_bytes)
                self._mark_evicted(state, CLIP_NAME)
            tmp = self.tmp_dir / item_id
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir()
            try:
                _write_file(tmp / EVENT_FILE, data)
                subdirs = set()
                for name, value in files.items():
                    if name in state.evicted:
                        continue
                    target = tmp / name
                    if target.parent != tmp:
                        target.parent.mkdir(exist_ok=True)
                        subdirs.add(target.parent)
                    if isinstance(value, bytes):
                        _write_file(target, value)
                    else:
                        shutil.move(str(value), target)  # rename, or copy+delete across devices
                        _fsync_file(target)
                for d in subdirs:
                    fsync_dir(d)
                _write_file(tmp / STATE_FILE, state.model_dump_json().encode())
                fsync_dir(tmp)
                os.rename(tmp, final)
                fsync_dir(self.ready_dir)
                fsync_dir(self.tmp_dir)
                self._used = self._bytes() if self._used is None else self._used + _dir_bytes(final)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            for name in state.evicted:
                value = files.get(name)
                if isinstance(value, Path):
                    value.unlink(missing_ok=True)
            if isinstance(message, LifecycleMessage):
                self._journal(message)
        log.info("spool: stored %s (%d bytes)", item_id, incoming)
        item = SpoolItem(item_id, final)
        self._notify(item)
        return item

    # ------------------------------------------------------------------------------- open-events journal
    def _journal_path(self, event_id: str) -> Path:
        return self.open_dir / f"{event_id}.json"

    def _journal(self, message: LifecycleMessage) -> None:
        """Records (or, for an end, removes) the event's latest spooled state; called under the lock."""
        path = self._journal_path(message.event_id)
        if message.phase == "end":
            if path.exists():
                path.unlink()
                fsync_dir(self.open_dir)
            return
        previous = self._read_journal(path)
        count = max(previous[1] if previous else 0,
                    message.segments[-1].index + 1 if message.segments else 0)
        entry = {"seq": message.seq, "segments_spooled": count, "message": json.loads(message.to_message_bytes())}
        tmp = path.with_suffix(".json.tmp")
        _write_file(tmp, json.dumps(entry, separators=(",", ":")).encode())
        os.rename(tmp, path)
        fsync_dir(self.open_dir)

    @staticmethod
    def _read_journal(path: Path) -> tuple[LifecycleMessage, int] | None:
        try:
            entry = json.loads(path.read_bytes())
            return LifecycleMessage.model_validate(entry["message"], strict=False), int(entry["segments_spooled"])
        except FileNotFoundError:
            return None

    def open_events(self) -> list[str]:
        """Event ids with a journal entry (open events, or left open by a crash)."""
        with self._lock:
            return sorted(p.stem for p in self.open_dir.glob("*.json"))

    def close_interrupted(self) -> list[SpoolItem]:
        """Closes the events a crash left open (see the module doc); call once at start, before any pipeline
        or deliverer runs on this spool. Each journal entry becomes an ``end`` message (``interrupted``,
        ``clip`` null, no new segment, ``segment_count`` = segments spooled, seq = the last spooled + 1).

        Returns:
            The ``end`` items spooled.
        """
        closed = []
        with self._lock:
            for path in sorted(self.open_dir.glob("*.json")):
                try:
                    found = self._read_journal(path)
                except (ValueError, KeyError, TypeError) as exc:
                    log.error("spool: unreadable journal entry %s (%s): removed", path.name, exc)
                    path.unlink()
                    continue
                if found is None:
                    continue
                last, count = found
                # A crash between an item's rename and the journal write leaves the item newer than the entry.
                for base in (self.ready_dir, self.failed_dir):
                    for d in base.glob(f"{last.event_id}.*"):
                        try:
                            msg = load_message((d / EVENT_FILE).read_bytes())
                        except (OSError, ValueError):
                            continue
                        if msg.phase == "end":
                            last = None
                            break
                        if msg.seq > last.seq:
                            last = msg
                        if msg.segments:
                            count = max(count, msg.segments[-1].index + 1)
                    if last is None:
                        break
                if last is None:  # its end is spooled already: only the journal was left
                    path.unlink()
                    fsync_dir(self.open_dir)
                    continue
                end = last.model_copy(update={"phase": "end", "seq": last.seq + 1, "interrupted": True,
                                              "clip": None, "segments": [], "segment_count": count,
                                              "sent_at": None})
                end = LifecycleMessage.model_validate_json(end.model_dump_json())  # checked like any message
                closed.append(self.put_message(end, {}))
                log.warning("spool: event %s was open when the edge stopped: closed as interrupted (seq %d, %d "
                            "segments)", end.event_id, end.seq, count)
        return closed

    # ------------------------------------------------------------------------------------- eviction
    def _bytes(self) -> int:
        """Bytes in ready/ + failed/, counted file by file (a walk of the whole spool)."""
        return sum(_dir_bytes(d) for base in (self.ready_dir, self.failed_dir) for d in base.iterdir())

    def _used_bytes(self) -> int:
        """Bytes in ready/ + failed/ as kept up to date (``_bytes`` once, the first time)."""
        if self._used is None:
            self._used = self._bytes()
        return self._used

    @staticmethod
    def _mark_evicted(state: SpoolState, name: str) -> None:
        if name not in state.evicted:
            state.evicted.append(name)
        if name == CLIP_NAME:
            state.clip_evicted = True

    def _make_room(self, incoming: int) -> None:
        """Deletes the oldest clips, then the oldest segments (ready and failed alike), until ``incoming``
        more bytes fit. Messages and snapshots are never deleted."""
        if self._used_bytes() + incoming <= self.max_bytes:
            return
        self._used = self._bytes()  # counted afresh before deleting anything (the kept count is a sum of
        if self._used + incoming <= self.max_bytes:  # changes; files changed by hand are not in it)
            return
        candidates = sorted(
            (SpoolItem(d.name, d) for base in (self.ready_dir, self.failed_dir) for d in base.iterdir()),
            key=lambda it: it.item_id,
        )
        victims = [(it, CLIP_NAME) for it in candidates]
        victims += [(it, f"segments/{p.name}") for it in candidates
                    for p in sorted((it.path / "segments").glob("*.ts"))]
        for item, name in victims:
            if self._used + incoming <= self.max_bytes:
                break
            path = item.path / name
            if not path.exists():
                continue
            size = path.stat().st_size
            # Mark first: a crash after the mark but before the unlink only loses a file we meant to drop.
            self._update_state_locked(item, lambda s, n=name: self._mark_evicted(s, n))
            path.unlink()
            fsync_dir(path.parent)
            self._used -= size
            log.warning("spool: over its %d-byte budget: evicted the %s of %s (%d bytes); the message is "
                        "kept and will be delivered without it", self.max_bytes,
                        "clip" if name == CLIP_NAME else name, item.item_id, size)

    # ---------------------------------------------------------------------------------------- reading
    def pending(self, lane: str | None = None) -> list[SpoolItem]:
        """Items in ``ready/``, oldest first (sorted by item id); only those of ``lane`` if given. In the
        ``live`` lane the urgent items (``SpoolItem.urgent``: starts, alerts) come first, each group oldest
        first, so a backlog of segment updates never holds back another event's ``start``."""
        if lane is not None and lane not in LANES:
            raise ValueError(f"lane must be one of {LANES}, got {lane!r}")
        with self._lock:
            items = sorted((SpoolItem(d.name, d) for d in self.ready_dir.iterdir() if d.is_dir()),
                           key=lambda it: it.item_id)
            if lane is None:
                return items
            items = [it for it in items if it.lane == lane]
            if lane == "live":
                items.sort(key=lambda it: not it.urgent)  # stable: oldest first within each group
            return items

    def failed(self) -> list[SpoolItem]:
        """Items moved to ``failed/``, oldest first."""
        with self._lock:
            return sorted((SpoolItem(d.name, d) for d in self.failed_dir.iterdir() if d.is_dir()),
                          key=lambda it: it.item_id)

    def load_event(self, item: SpoolItem) -> Message:
        """The item's message (``EdgeEvent`` or ``LifecycleMessage``).

        Raises:
            FileNotFoundError: the item is gone.
            pydantic.ValidationError: ``event.json`` is not a valid message (e.g. disk corruption).
        """
        return load_message(item.event_path.read_bytes())

    def load_state(self, item: SpoolItem) -> SpoolState:
        """The item's delivery progress (a fresh state if ``state.json`` is missing)."""
        try:
            return SpoolState.model_validate_json(item.state_path.read_bytes())
        except FileNotFoundError:
            return SpoolState()

    def claim(self, item: SpoolItem) -> bool:
        """Marks ``item`` as being delivered (in memory); False if another deliverer holds it (an item can
        change lanes when its clip is evicted)."""
        with self._lock:
            if item.item_id in self._claimed:
                return False
            self._claimed.add(item.item_id)
            return True

    def release(self, item: SpoolItem) -> None:
        """Ends a ``claim``."""
        with self._lock:
            self._claimed.discard(item.item_id)

    # ---------------------------------------------------------------------------------------- writing
    def save_state(self, item: SpoolItem, state: SpoolState) -> None:
        """Replaces ``state.json`` atomically (write tmp, fsync, rename, fsync dir).

        Prefer ``update_state`` when another thread may change the same item (eviction does).
        """
        with self._lock:
            self._save_state_locked(item, state)

    def _save_state_locked(self, item: SpoolItem, state: SpoolState) -> None:
        tmp = item.path / (STATE_FILE + ".tmp")
        data = state.model_dump_json().encode()
        try:
            old = item.state_path.stat().st_size
        except FileNotFoundError:
            old = 0
        _write_file(tmp, data)
        os.rename(tmp, item.state_path)
        fsync_dir(item.path)
        if self._used is not None:
            self._used += len(data) - old

    def update_state(self, item: SpoolItem, change: Callable[[SpoolState], None]) -> SpoolState:
        """Read-modify-write of ``state.json`` under the spool lock.

        Args:
            item: the item.
            change: mutates the loaded state in place.

        Returns:
            The saved state.
        """
        with self._lock:
            return self._update_state_locked(item, change)

    def _update_state_locked(self, item: SpoolItem, change: Callable[[SpoolState], None]) -> SpoolState:
        state = self.load_state(item)
        change(state)
        self._save_state_locked(item, state)
        return state

    def remove(self, item: SpoolItem) -> None:
        """Deletes a delivered item (no error if it is already gone).

        The directory is first renamed into ``tmp/`` (atomic, fsynced) and only then deleted, so a crash in
        the middle never leaves a half-deleted item in ``ready/`` (``tmp/`` is emptied at start).
        """
        with self._lock:
            if item.path.exists():
                size = _dir_bytes(item.path)
                doomed = self.tmp_dir / f"removed-{item.item_id}-{os.getpid()}"
                os.rename(item.path, doomed)
                fsync_dir(item.path.parent)
                shutil.rmtree(doomed)
                if self._used is not None:
                    self._used = max(0, self._used - size)

    def move_to_failed(self, item: SpoolItem, reason: str) -> SpoolItem:
        """Moves an item the cloud refused for good to ``failed/`` (kept, with ``reason`` in its state).

        Returns:
            The item at its new place.
        """
        with self._lock:
            self._update_state_locked(item, lambda s: setattr(s, "last_error", reason))
            target = self.failed_dir / item.item_id
            os.rename(item.path, target)
            fsync_dir(self.failed_dir)
            fsync_dir(self.ready_dir)
        log.error("spool: item %s moved to %s: %s", item.item_id, target, reason)
        return SpoolItem(item.item_id, target)

    def stats(self) -> dict[str, int]:
        """``{"items": pending items, "live": of them in the live lane, "bulk": in the bulk lane, "bytes":
        bytes used by ready/ and failed/, "failed": failed items, "open_events": journal entries}``."""
        with self._lock:
            pending = self.pending()
            bulk = sum(1 for it in pending if it.lane == "bulk")
            return {
                "items": len(pending),
                "live": len(pending) - bulk,
                "bulk": bulk,
                "bytes": self._used_bytes(),
                "failed": sum(1 for d in self.failed_dir.iterdir() if d.is_dir()),
                "open_events": sum(1 for _ in self.open_dir.glob("*.json")),
            }
