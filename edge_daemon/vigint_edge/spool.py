"""Durable on-disk spool of finished events waiting to be delivered to the cloud.

Layout under ``root``::

    tmp/<event_id>/      an item being written (deleted on start: a crash left it half done)
    ready/<event_id>/    complete items, delivered oldest first (event ids are time ordered)
        event.json       the EdgeEvent (compact JSON, written once)
        clip.mp4         the clip (absent if there was none or it was evicted)
        snapshot.jpg     the snapshot (absent if the event has none)
        state.json       delivery progress (``SpoolState``), replaced atomically
    failed/<event_id>/   items the cloud refused for good (kept for an operator, never deleted here)

An item appears in ``ready/`` only by ``rename`` of a directory whose files and the directory itself were
fsynced first, and the rename is fsynced too, so after a crash, ``kill -9`` or power loss an item is either
whole in ``ready/`` or not there at all.

Disk use is bounded by ``max_bytes`` (all files under ``ready/`` and ``failed/``). When a new item would go
over, the oldest clips are deleted first; the event record and snapshot stay and the event is still
delivered, with ``clip`` null in the message (``SpoolState.clip_evicted``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from pydantic import BaseModel, ConfigDict, Field

from vigint_edge.clip import fsync_dir
from vigint_edge.event_model import CLIP_NAME, SNAPSHOT_NAME, EdgeEvent

log = logging.getLogger(__name__)

__all__ = ["Spool", "SpoolItem", "SpoolState"]

EVENT_FILE = "event.json"
STATE_FILE = "state.json"


class SpoolState(BaseModel):
    """Delivery progress of one item (``state.json``).

    Attributes:
        uploaded: file names (``clip.mp4``, ``snapshot.jpg``) already stored in GCS.
        objects: file name -> GCS object name it was uploaded to.
        published: the event message was accepted by Pub/Sub.
        message_id: Pub/Sub message id of that publish.
        clip_evicted: the clip was deleted to keep the spool within ``max_bytes``.
        attempts: delivery attempts that ended in an error.
        last_error: the last error (no secrets or URLs).
    """

    model_config = ConfigDict(extra="ignore")

    uploaded: list[str] = Field(default_factory=list)
    objects: dict[str, str] = Field(default_factory=dict)
    published: bool = False
    message_id: str | None = None
    clip_evicted: bool = False
    attempts: int = 0
    last_error: str | None = None


@dataclass(frozen=True)
class SpoolItem:
    """One spooled event (a directory under ``ready/`` or ``failed/``)."""

    event_id: str
    path: Path

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
    try:
        with os.scandir(path) as it:
            for entry in it:
                try:
                    total += entry.stat(follow_symlinks=False).st_size
                except FileNotFoundError:
                    pass
    except FileNotFoundError:
        pass
    return total


class Spool:
    """The durable event spool.

    Thread-safe: the event lifecycle ``put``s while the deliverer reads, updates and removes items.

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
        self._lock = threading.RLock()
        for d in (self.tmp_dir, self.ready_dir, self.failed_dir):
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

    # ------------------------------------------------------------------------------------------- put
    def put(self, event: EdgeEvent, clip_path: Path | None, snapshot_jpeg: bytes | None) -> SpoolItem:
        """Stores a finished event durably; the clip file is moved in.

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
        eid = event.event_id
        if (event.clip is None) != (clip_path is None):
            raise ValueError("clip_path must be given exactly when event.clip is set")
        if (event.snapshot is None) != (snapshot_jpeg is None):
            raise ValueError("snapshot_jpeg must be given exactly when event.snapshot is set")
        if clip_path is not None:
            clip_path = Path(clip_path)
            size = clip_path.stat().st_size
            if size != event.clip.bytes:
                raise ValueError(f"clip {clip_path} has {size} bytes, event.clip.bytes says {event.clip.bytes}")
        if snapshot_jpeg is not None:
            if len(snapshot_jpeg) != event.snapshot.bytes or \
                    hashlib.sha256(snapshot_jpeg).hexdigest() != event.snapshot.sha256:
                raise ValueError("snapshot bytes do not match event.snapshot (bytes/sha256)")
        event_json = event.to_message_bytes()
        state = SpoolState()
        incoming = len(event_json) + len(snapshot_jpeg or b"") + (event.clip.bytes if event.clip else 0)

        with self._lock:
            final = self.ready_dir / eid
            if final.exists() or (self.failed_dir / eid).exists():
                raise FileExistsError(f"event {eid} is already spooled")
            clip_bytes = event.clip.bytes if event.clip else 0
            if clip_bytes and incoming > self.max_bytes:
                # The clip can never fit: evicting older clips for it would only lose them too.
                log.warning("spool: the clip of %s (%d bytes) is larger than the whole %d-byte budget: "
                            "keeping the event without it", eid, clip_bytes, self.max_bytes)
                state.clip_evicted = True
                incoming -= clip_bytes
            self._make_room(incoming)
            if clip_path is not None and not state.clip_evicted and self._bytes() + incoming > self.max_bytes:
                incoming -= clip_bytes
                log.warning("spool: no room for the clip of %s (%d bytes, budget %d): keeping the event "
                            "without it", eid, event.clip.bytes, self.max_bytes)
                state.clip_evicted = True
            tmp = self.tmp_dir / eid
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir()
            try:
                _write_file(tmp / EVENT_FILE, event_json)
                if snapshot_jpeg is not None:
                    _write_file(tmp / SNAPSHOT_NAME, snapshot_jpeg)
                if clip_path is not None and not state.clip_evicted:
                    shutil.move(str(clip_path), tmp / CLIP_NAME)  # rename, or copy+delete across devices
                    _fsync_file(tmp / CLIP_NAME)
                _write_file(tmp / STATE_FILE, state.model_dump_json().encode())
                fsync_dir(tmp)
                os.rename(tmp, final)
                fsync_dir(self.ready_dir)
                fsync_dir(self.tmp_dir)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            if clip_path is not None and state.clip_evicted:
                clip_path.unlink(missing_ok=True)
        log.info("spool: stored %s (%d bytes)", eid, incoming)
        return SpoolItem(eid, final)

    # ------------------------------------------------------------------------------------- eviction
    def _bytes(self) -> int:
        return sum(_dir_bytes(d) for base in (self.ready_dir, self.failed_dir) for d in base.iterdir())

    def _make_room(self, incoming: int) -> None:
        """Deletes the oldest clips (ready and failed alike) until ``incoming`` more bytes fit."""
        total = self._bytes()
        if total + incoming <= self.max_bytes:
            return
        candidates = sorted(
            (SpoolItem(d.name, d) for base in (self.ready_dir, self.failed_dir) for d in base.iterdir()),
            key=lambda it: it.event_id,
        )
        for item in candidates:
            if total + incoming <= self.max_bytes:
                break
            if not item.clip_path.exists():
                continue
            size = item.clip_path.stat().st_size
            # Mark first: a crash after the mark but before the unlink only loses a clip we meant to drop.
            self._update_state_locked(item, lambda s: setattr(s, "clip_evicted", True))
            item.clip_path.unlink()
            fsync_dir(item.path)
            total -= size
            log.warning("spool: over its %d-byte budget: evicted the clip of %s (%d bytes); the event is "
                        "kept and will be delivered without its clip", self.max_bytes, item.event_id, size)

    # ---------------------------------------------------------------------------------------- reading
    def pending(self) -> list[SpoolItem]:
        """Items in ``ready/``, oldest first (sorted by event id)."""
        with self._lock:
            return sorted((SpoolItem(d.name, d) for d in self.ready_dir.iterdir() if d.is_dir()),
                          key=lambda it: it.event_id)

    def failed(self) -> list[SpoolItem]:
        """Items moved to ``failed/``, oldest first."""
        with self._lock:
            return sorted((SpoolItem(d.name, d) for d in self.failed_dir.iterdir() if d.is_dir()),
                          key=lambda it: it.event_id)

    def load_event(self, item: SpoolItem) -> EdgeEvent:
        """The item's event.

        Raises:
            FileNotFoundError: the item is gone.
            pydantic.ValidationError: ``event.json`` is not a valid event (e.g. disk corruption).
        """
        return EdgeEvent.model_validate_json(item.event_path.read_bytes())

    def load_state(self, item: SpoolItem) -> SpoolState:
        """The item's delivery progress (a fresh state if ``state.json`` is missing)."""
        try:
            return SpoolState.model_validate_json(item.state_path.read_bytes())
        except FileNotFoundError:
            return SpoolState()

    # ---------------------------------------------------------------------------------------- writing
    def save_state(self, item: SpoolItem, state: SpoolState) -> None:
        """Replaces ``state.json`` atomically (write tmp, fsync, rename, fsync dir).

        Prefer ``update_state`` when another thread may change the same item (eviction does).
        """
        with self._lock:
            self._save_state_locked(item, state)

    def _save_state_locked(self, item: SpoolItem, state: SpoolState) -> None:
        tmp = item.path / (STATE_FILE + ".tmp")
        _write_file(tmp, state.model_dump_json().encode())
        os.rename(tmp, item.state_path)
        fsync_dir(item.path)

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
                doomed = self.tmp_dir / f"removed-{item.event_id}-{os.getpid()}"
                os.rename(item.path, doomed)
                fsync_dir(item.path.parent)
                shutil.rmtree(doomed)

    def move_to_failed(self, item: SpoolItem, reason: str) -> SpoolItem:
        """Moves an item the cloud refused for good to ``failed/`` (kept, with ``reason`` in its state).

        Returns:
            The item at its new place.
        """
        with self._lock:
            self._update_state_locked(item, lambda s: setattr(s, "last_error", reason))
            target = self.failed_dir / item.event_id
            os.rename(item.path, target)
            fsync_dir(self.failed_dir)
            fsync_dir(self.ready_dir)
        log.error("spool: event %s moved to %s: %s", item.event_id, target, reason)
        return SpoolItem(item.event_id, target)

    def stats(self) -> dict[str, int]:
        """``{"items": pending items, "bytes": bytes used by ready/ and failed/, "failed": failed items}``."""
        with self._lock:
            return {
                "items": sum(1 for d in self.ready_dir.iterdir() if d.is_dir()),
                "bytes": self._bytes(),
                "failed": sum(1 for d in self.failed_dir.iterdir() if d.is_dir()),
            }
