"""Delivers spooled messages to the cloud: upload the files each brings through signed URLs, then publish.

A ``Deliverer`` drains one lane of the spool (``lane="live"``: starts, updates, health events; ``"bulk"``:
messages with a clip; None: both, oldest first) so a 30 MB clip upload never holds back the next event's
``start``; the daemon runs ``LIVE_DELIVERERS`` of the live lane side by side and one of the bulk lane. For each item of its lane, oldest first:

1. ask ``edge_api`` for signed PUT URLs for the files not uploaded yet (a version 1 event's ``clip.mp4`` and
   ``snapshot.jpg``; a version 2 message's ``segments/NNNNN.ts``, ``snapshots/NNNNN.jpg``, ``clip.mp4``;
   at most ``MAX_UPLOAD_FILES`` per call, the edge_api limit), declaring each file's size and base64 MD5;
2. PUT each file with exactly the headers the URL was signed for (``Content-Type``, ``Content-MD5``, the
   size range and ``x-goog-if-generation-match: 0``; transient errors retried with tenacity), recording it
   (and its MD5) in ``state.json`` after each file, so a restart only uploads what is missing. A file the
   bucket already holds (edge_api lists it under ``stored``, or storage answers 412 to the PUT: a PUT whose
   answer was lost) counts as uploaded if its size and MD5 are this file's; otherwise it is a conflict:
   logged, recorded in ``state.conflicts``, never retried and never replaced (the message still claims this
   file's size and hashes, so ingest flags the event's evidence);
3. only when every file is stored, publish the signed message (version 2: ``sent_at`` set to the device clock
   just before; attributes ``schema_version`` "2", ``phase``, ``seq``) and record ``published``;
4. remove the item.

Files the spool evicted (disk budget) are not uploaded and their refs are dropped from the message (``clip``
null, the segment left out of ``segments``). The refs of the files this item uploaded carry their ``md5``.

Delivery guarantees: at least once. A crash after Pub/Sub accepted the message but before ``published``
was recorded re-publishes the same message after restart (version 2: with the ``sent_at`` recorded before
that publish, so the bytes are identical); the cloud applies each (event_id, seq) once, so the duplicate is
harmless. A crash after ``published`` was recorded only removes the item.

Order is kept: a transient failure (network, 5xx, 429, Pub/Sub unavailable) stops the pass and the same
item is tried again next time. A permanent refusal of one item by ``edge_api`` (4xx other than
401/403/429), a 413 from storage, or a corrupt item moves it to ``<spool>/failed/`` and the pass continues.
Storage refusing a signed PUT otherwise (400/403/404 twice, with a fresh URL the second time) is taken as a
problem of the bucket or signer, not of the event: the item stays and the pass stops. 401/403
mean the device's credentials are wrong or revoked: nothing is moved, the pass stops and is retried later.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import threading
import time
from datetime import datetime, timezone
from enum import Enum

import requests
from pydantic import ValidationError

from vigint_edge.cloud.api_client import (
    ApiError,
    AuthError,
    EdgeApiClient,
    PermanentApiError,
    StoredObject,
    TransientApiError,
    UploadFile,
    UploadTarget,
    is_transient,
    retrying,
)
from vigint_edge.event_model import (CLIP_NAME, SEGMENT_CONTENT_TYPE, SNAPSHOT_CONTENT_TYPE, SNAPSHOT_NAME,
                                     EdgeEvent, LifecycleMessage, format_time, object_name, segment_name,
                                     snapshot_name)
from vigint_edge.delivery.publisher import EventPublisher, PublishError
from vigint_edge.delivery.spool import LANES, Spool, SpoolItem, SpoolState

log = logging.getLogger(__name__)

__all__ = ["Deliverer", "Outcome"]

MAX_UPLOAD_FILES = 32  # edge_api signs at most 32 files per POST /v1/uploads (functions/vigint/edge_api.py)


class RedactSignedUrls(logging.Filter):
    """Blanks the signature of signed URLs in records of a logger it is attached to.

    ``urllib3`` logs every request line, query string included, at DEBUG; a signed URL's
    ``X-Goog-Signature`` is a credential and must not reach a log even at DEBUG.
    """

    _pattern = re.compile(r"(X-Goog-Signature=)[^&\s\"]+", re.IGNORECASE)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "x-goog-signature" in message.lower():
            record.msg, record.args = self._pattern.sub(r"\1REDACTED", message), ()
        return True


def _install_redaction() -> None:
    logger = logging.getLogger("urllib3.connectionpool")
    if not any(isinstance(f, RedactSignedUrls) for f in logger.filters):
        logger.addFilter(RedactSignedUrls())


class Outcome(Enum):
    """What became of one item in one attempt."""

    DELIVERED = "delivered"  # uploaded, published, removed from the spool
    FAILED = "failed"  # refused for good, moved to failed/
    RETRY = "retry"  # transient failure, still pending
    AUTH = "auth"  # the device's credentials were refused, still pending
    GONE = "gone"  # the item disappeared from the spool meanwhile


class _CorruptItem(Exception):
    """A spooled item lacks a file its event refers to."""


class _UploadRefused(Exception):
    """A signed-URL PUT answered 4xx (other than 429)."""

    def __init__(self, name: str, status: int) -> None:
        super().__init__(f"upload of {name} refused: HTTP {status}")
        self.status = status


class Deliverer:
    """Moves items from the spool to the cloud.

    Args:
        spool: the spool to drain.
        api: ``edge_api`` client of this device.
        publisher: the event publisher.
        key_version: the device's key version (message attribute).
        secret: the device secret (signs messages); never logged.
        session: HTTP session for the signed-URL PUTs (a new one if None).
        upload_timeout_s: seconds to connect / between bytes for one PUT.
        max_attempts: attempts per PUT on transient errors.
        backoff_initial_s: first retry wait of a PUT in seconds.
        backoff_max_s: longest retry wait, and the longest pause of ``run`` after failures, in seconds.
        lane: ``"live"`` or ``"bulk"``: only that lane's items; None: all items.
        clock: the device clock for ``sent_at`` (returns an aware UTC datetime).

    Raises:
        ValueError: unknown lane.
    """

    def __init__(self, spool: Spool, api: EdgeApiClient, publisher: EventPublisher, key_version: int,
                 secret: str, session: requests.Session | None = None, *, upload_timeout_s: float = 60.0,
                 max_attempts: int = 5, backoff_initial_s: float = 0.5, backoff_max_s: float = 60.0,
                 lane: str | None = None, clock=None) -> None:
        if lane is not None and lane not in LANES:
            raise ValueError(f"lane must be one of {LANES} or None, got {lane!r}")
        self.lane = lane
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        self.spool = spool
        self.api = api
        self.publisher = publisher
        self.key_version = key_version
        self._secret = secret
        self.session = session or requests.Session()
        self.upload_timeout_s = upload_timeout_s
        self.max_attempts = max_attempts
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self._wake = threading.Event()
        self.last_pass_failed = False
        _install_redaction()

    def __repr__(self) -> str:
        return f"Deliverer(spool={self.spool.root}, device={self.api.device_id!r}, lane={self.lane!r})"

    # --------------------------------------------------------------------------------------- public
    def deliver_one(self, item: SpoolItem) -> bool:
        """Delivers one item (see the module doc).

        Returns:
            True if it was delivered and removed; False otherwise (still pending after a transient
            failure, or moved to ``failed/``: see ``attempt`` for which).
        """
        return self.attempt(item) is Outcome.DELIVERED

    def deliver_pending(self) -> int:
        """Delivers this lane's pending items oldest first, stopping at the first transient failure. Items
        another deliverer is working on (claimed) are skipped, and so are the later items of their event: each
        event's messages keep their lane order while several deliverers of a lane work side by side.

        Returns:
            How many items were delivered in this pass.
        """
        delivered = 0
        held: set[str] = set()  # events whose earlier item another deliverer holds: theirs wait for it
        for item in self.spool.pending(self.lane):
            if item.event_id in held or not self.spool.claim(item):
                held.add(item.event_id)
                continue
            try:
                outcome = self.attempt(item)
            finally:
                self.spool.release(item)
            if outcome is Outcome.DELIVERED:
                delivered += 1
            elif outcome in (Outcome.RETRY, Outcome.AUTH):
                self.last_pass_failed = True
                return delivered
            if self._wake.is_set():
                break  # something new was spooled meanwhile: a new pass sorts it in (a start goes first)
        self.last_pass_failed = False
        return delivered

    def wake(self, lane: str | None = None) -> None:
        """Makes ``run`` start a pass now (call after ``spool.put``; a spool listener). A ``lane`` other than
        this deliverer's is ignored."""
        if lane is None or self.lane is None or lane == self.lane:
            self._wake.set()

    def run(self, stop: threading.Event, idle_wait_s: float = 1.0) -> None:
        """Delivers until ``stop`` is set: a pass, then a pause of ``idle_wait_s`` seconds (or until
        ``wake()``); after a failed pass the pause grows exponentially up to ``backoff_max_s``.

        Never raises: an unexpected error is logged and treated like a transient failure.
        """
        self.publisher.warm()  # the first start must not wait for credentials and a Pub/Sub channel
        backoff = 0.0
        while not stop.is_set():
            # Cleared before the pass, not after: an item put while the pass runs keeps the flag set, so the
            # pause below ends at once instead of waiting out idle_wait_s (a start must not wait).
            self._wake.clear()
            try:
                self.deliver_pending()
                failed = self.last_pass_failed
            except Exception:  # noqa: BLE001 - the delivery thread must outlive any one bug
                log.exception("delivery pass crashed")
                failed = True
            if failed:
                backoff = min(self.backoff_max_s, max(self.backoff_initial_s, backoff * 2) or 1.0)
                pause = backoff
            else:
                backoff = 0.0
                pause = idle_wait_s
            # Wake early on stop or wake(); checked in short slices so both are seen promptly.
            waited = 0.0
            while waited < pause and not stop.is_set() and not self._wake.is_set():
                self._wake.wait(min(0.2, pause - waited))
                waited += 0.2

    # ------------------------------------------------------------------------------------- one item
    def attempt(self, item: SpoolItem) -> Outcome:
        """One delivery attempt of one item; never raises for delivery failures.

        Returns:
            The ``Outcome``.
        """
        eid = item.item_id
        began = time.perf_counter()
        try:
            queued_s = max(0.0, time.time() - item.path.stat().st_mtime)  # since the item entered ready/
        except OSError:
            queued_s = 0.0
        try:
            event = self.spool.load_event(item)
            state = self.spool.load_state(item)
        except FileNotFoundError:
            if item.path.exists():
                # event.json is written before an item enters ready/ and only removal deletes it: this is
                # an item whose removal a crash interrupted (it was delivered). Finish the removal.
                log.warning("delivery: %s was being removed when the edge stopped; removing it", eid)
                self.spool.remove(item)
            else:
                log.warning("delivery: %s vanished from the spool", eid)
            return Outcome.GONE
        except (ValidationError, ValueError) as exc:
            self.spool.move_to_failed(item, f"unreadable event.json: {exc}")
            return Outcome.FAILED
        if (event.tenant_id, event.device_id) != (self.api.tenant_id, self.api.device_id):
            self.spool.move_to_failed(
                item, f"event belongs to {event.tenant_id}/{event.device_id}, this device is "
                      f"{self.api.tenant_id}/{self.api.device_id}")
            return Outcome.FAILED
        if state.published:
            self.spool.remove(item)
            log.info("delivery: %s was already published (message %s); removed", eid, state.message_id)
            return Outcome.DELIVERED
        try:
            state = self._upload_missing(item, event, state)
        except AuthError as exc:
            return self._auth_failed(item, exc)
        except (PermanentApiError, _UploadRefused, _CorruptItem) as exc:
            self.spool.move_to_failed(item, str(exc))
            return Outcome.FAILED
        except (ApiError, requests.RequestException, OSError) as exc:
            return self._transient(item, exc)
        uploaded = time.perf_counter()
        message = self._message(event, state)
        if isinstance(message, LifecycleMessage):
            # A sent_at left by a publish whose outcome a crash hid is reused: the same bytes again, which the
            # cloud takes as the duplicate it is (a new sent_at would be the same seq with other data).
            sent_at = state.sent_at or format_time(self.clock())
            if state.sent_at is None:
                state = self.spool.update_state(item, lambda s: setattr(s, "sent_at", sent_at))
            message = message.model_copy(update={"sent_at": datetime.fromisoformat(sent_at)})
        try:
            message_id = self.publisher.publish(message, self.key_version, self._secret)
        except (AuthError, PublishError, ApiError, requests.RequestException, OSError) as exc:
            if state.sent_at is not None:
                self._clear_sent_at(item)
            if isinstance(exc, AuthError):
                return self._auth_failed(item, exc)
            # Not this item's fault (Pub/Sub or publish credentials): keep it and keep the order.
            return self._transient(item, exc)

        def mark_published(s: SpoolState) -> None:
            s.published = True
            s.message_id = message_id

        published = time.perf_counter()
        self.spool.update_state(item, mark_published)
        self.spool.remove(item)
        log.info("delivery: %s delivered (message %s) %.1f ms after it was spooled: %.1f ms waiting, %.1f ms "
                 "uploads, %.1f ms publish", eid, message_id, (queued_s + published - began) * 1000,
                 queued_s * 1000, (uploaded - began) * 1000, (published - uploaded) * 1000)
        return Outcome.DELIVERED

    def _clear_sent_at(self, item: SpoolItem) -> None:
        try:
            self.spool.update_state(item, lambda s: setattr(s, "sent_at", None))
        except FileNotFoundError:
            pass

    def _auth_failed(self, item: SpoolItem, exc: Exception) -> Outcome:
        log.error("delivery: edge_api refused this device's credentials (%s); will retry later", exc)
        self._note_error(item, str(exc))
        return Outcome.AUTH

    def _transient(self, item: SpoolItem, exc: BaseException) -> Outcome:
        reason = _describe(exc)
        log.warning("delivery: %s not delivered yet (%s); will retry", item.item_id, reason)
        self._note_error(item, reason)
        return Outcome.RETRY

    def _note_error(self, item: SpoolItem, reason: str) -> None:
        def note(s: SpoolState) -> None:
            s.attempts += 1
            s.last_error = reason

        try:
            self.spool.update_state(item, note)
        except FileNotFoundError:
            pass

    def _files_to_upload(self, item: SpoolItem, event, state: SpoolState) -> list[UploadFile]:
        if isinstance(event, LifecycleMessage):
            return self._lifecycle_files(item, event, state)
        files = []
        if event.clip is not None and CLIP_NAME not in state.uploaded and not state.clip_evicted:
            if item.clip_path.exists():
                files.append(_upload_file(item.clip_path, CLIP_NAME, event.clip.content_type))
            else:  # evicted between put and now without the mark (cannot normally happen); deliver without
                log.warning("delivery: clip of %s is missing; publishing without it", item.item_id)
        if event.snapshot is not None and SNAPSHOT_NAME not in state.uploaded:
            if not item.snapshot_path.exists():
                raise _CorruptItem(f"item {item.item_id} has no snapshot.jpg although its event refers to one")
            files.append(_upload_file(item.snapshot_path, SNAPSHOT_NAME, event.snapshot.content_type))
        return files

    def _lifecycle_files(self, item: SpoolItem, message: LifecycleMessage, state: SpoolState) -> list[UploadFile]:
        """The files a version 2 message brings that are still to upload: its own snapshot (small, first),
        its segments, its clip."""
        wanted: list[tuple[str, str, bool]] = []  # (name, content type, may be evicted)
        own = snapshot_name(message.seq)
        if message.snapshot is not None and message.snapshot.object.endswith("/" + own):
            wanted.append((own, SNAPSHOT_CONTENT_TYPE, False))
        wanted += [(segment_name(seg.index), SEGMENT_CONTENT_TYPE, True) for seg in message.segments]
        if message.clip is not None:
            wanted.append((CLIP_NAME, message.clip.content_type, True))
        files = []
        for name, content_type, evictable in wanted:
            if name in state.uploaded or name in state.evicted:
                continue
            path = item.path / name
            if not path.exists():
                if not evictable:
                    raise _CorruptItem(f"item {item.item_id} has no {name} although its message refers to it")
                log.warning("delivery: %s of %s is missing; publishing without it", name, item.item_id)
                continue
            files.append(_upload_file(path, name, content_type))
        return files

    def _upload_missing(self, item: SpoolItem, event: EdgeEvent, state: SpoolState) -> SpoolState:
        files = self._files_to_upload(item, event, state)
        for i in range(0, len(files), MAX_UPLOAD_FILES):
            state = self._upload_batch(item, event, files[i:i + MAX_UPLOAD_FILES])
        return state

    def _upload_batch(self, item: SpoolItem, event, files: list[UploadFile]) -> SpoolState:
        state = self.spool.load_state(item)
        targets, stored = self.api.uploads(event.event_id, files)
        by_name = {f.name: f for f in files}
        for obj in stored:  # a PUT whose answer was lost, or a file stored by an earlier run
            state = self._found_stored(item, event, by_name[obj.name], obj)
        for target in targets:
            f = by_name[target.name]
            path = item.path / f.name
            try:
                self._put(path, target, f.content_type)
            except _UploadRefused as exc:
                if exc.status == 413:
                    raise
                if exc.status == 412:  # x-goog-if-generation-match: 0 failed: the object exists
                    state = self._found_stored(item, event, f, self._stored_object(event, f))
                    continue
                # A signed URL can expire while earlier files upload: one fresh URL, one more try.
                log.warning("delivery: upload of %s/%s refused (HTTP %d); retrying once with a fresh URL",
                            event.event_id, f.name, exc.status)
                fresh, now_stored = self.api.uploads(event.event_id, [f])
                if now_stored:
                    state = self._found_stored(item, event, f, now_stored[0])
                    continue
                target = fresh[0]
                try:
                    self._put(path, target, f.content_type)
                except _UploadRefused as again:
                    if again.status == 413:
                        raise
                    if again.status == 412:
                        state = self._found_stored(item, event, f, self._stored_object(event, f))
                        continue
                    # edge_api accepted the file, so a refusal by storage is about the bucket or the
                    # signer (missing bucket, signer without rights), not this event: keep it, retry later.
                    log.error("delivery: storage refused %s/%s with HTTP %d although edge_api signed it; "
                              "check the bucket and the URL signer", event.event_id, f.name, again.status)
                    raise TransientApiError(str(again), status=again.status) from None
            state = self._mark_uploaded(item, f, target.object)
            log.info("delivery: uploaded %s/%s (%d bytes) to %s", event.event_id, f.name, f.bytes, target.object)
        return state

    def _mark_uploaded(self, item: SpoolItem, f: UploadFile, obj: str, conflict: str | None = None) -> SpoolState:
        def mark(s: SpoolState) -> None:
            if f.name not in s.uploaded:
                s.uploaded.append(f.name)
            s.objects[f.name] = obj
            if f.md5 is not None:
                s.md5[f.name] = f.md5
            if conflict is not None:
                s.conflicts[f.name] = conflict

        return self.spool.update_state(item, mark)

    def _stored_object(self, event, f: UploadFile) -> StoredObject:
        """What edge_api says is stored under a file's name after storage answered 412 to its PUT.

        Raises:
            TransientApiError: edge_api sees no object there (not consistent with the 412: try later).
        """
        targets, stored = self.api.uploads(event.event_id, [f])
        if not stored:
            raise TransientApiError(f"storage answered 412 for {f.name} but edge_api finds no object; will retry",
                                    status=412)
        return stored[0]

    def _found_stored(self, item: SpoolItem, event, f: UploadFile, obj: StoredObject) -> SpoolState:
        """A file the bucket already holds: uploaded if it is this very file (same size and MD5); otherwise a
        conflict, logged and recorded (``SpoolState.conflicts``) but not retried: stored evidence is never
        replaced, and the message (with this file's own size and hashes) lets the cloud flag the mismatch."""
        same_size = obj.bytes == f.bytes
        same_md5 = f.md5 is not None and obj.md5 == f.md5
        if same_size and (same_md5 or (f.md5 is None and obj.md5 is None)):
            log.info("delivery: %s/%s is already stored (%d bytes, same MD5)", event.event_id, f.name, f.bytes)
            return self._mark_uploaded(item, f, obj.object)
        why = (f"stored object is {obj.bytes} bytes with MD5 {obj.md5}, this file {f.bytes} bytes with MD5 "
               f"{f.md5}")
        log.error("delivery: CONFLICT: %s/%s is already stored with other content (%s); not replaced, the "
                  "cloud will flag the event's evidence", event.event_id, f.name, why)
        return self._mark_uploaded(item, f, obj.object, conflict=why)

    def _put(self, path, target: UploadTarget, content_type: str) -> None:
        headers = dict(target.headers)
        if not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = content_type
        url = target.url.get_secret_value()

        def once() -> None:
            with open(path, "rb") as body:
                resp = self.session.request(target.method, url, data=body, headers=headers,
                                            timeout=self.upload_timeout_s)
            if resp.status_code == 429 or resp.status_code >= 500:
                raise requests.HTTPError(f"HTTP {resp.status_code}", response=resp)
            if resp.status_code >= 400:
                raise _UploadRefused(target.name, resp.status_code)

        try:
            retrying(self.max_attempts, self.backoff_initial_s, self.backoff_max_s, f"upload {target.name}")(once)
        except requests.RequestException as exc:
            # Strip the exception of the URL (it carries the signature) before it travels further.
            raise TransientApiError(f"upload of {target.name}: {_describe(exc)}") from None

    def _message(self, event, state: SpoolState):
        """The message as published: refs point at the uploaded objects; an evicted clip is null, evicted (or
        missing) segments are left out."""
        def hashed(ref, name: str):  # the MD5 of the file this item uploaded under that name (ingest checks it)
            md5 = state.md5.get(name)
            return ref.model_copy(update={"md5": md5}) if md5 is not None and ref.md5 is None else ref

        if isinstance(event, LifecycleMessage):
            update = {"segments": [hashed(seg, segment_name(seg.index)) for seg in event.segments
                                   if segment_name(seg.index) in state.uploaded]}
            if event.clip is not None:
                update["clip"] = hashed(event.clip, CLIP_NAME) if CLIP_NAME in state.uploaded else None
            own = snapshot_name(event.seq)
            if event.snapshot is not None and event.snapshot.object.endswith("/" + own):
                update["snapshot"] = hashed(event.snapshot, own)
            return event.model_copy(update=update)
        update: dict = {}
        if event.clip is not None:
            if CLIP_NAME in state.uploaded:
                update["clip"] = hashed(event.clip, CLIP_NAME).model_copy(update={"object": state.objects.get(
                    CLIP_NAME, object_name(event.tenant_id, event.device_id, event.event_id, CLIP_NAME))})
            else:
                update["clip"] = None
        if event.snapshot is not None and SNAPSHOT_NAME in state.objects:
            update["snapshot"] = hashed(event.snapshot, SNAPSHOT_NAME).model_copy(
                update={"object": state.objects[SNAPSHOT_NAME]})
        return event.model_copy(update=update) if update else event


def file_md5(path) -> str:
    """Base64 MD5 of a file (as ``Content-MD5`` and Cloud Storage's ``md5Hash``), read in 1 MiB blocks."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return base64.b64encode(digest.digest()).decode("ascii")


def _upload_file(path, name: str, content_type: str) -> UploadFile:
    """The ``/v1/uploads`` entry of one spooled file: its size and MD5 (both bound into its signed URL)."""
    return UploadFile(name=name, content_type=content_type, bytes=path.stat().st_size, md5=file_md5(path))


def _describe(exc: BaseException) -> str:
    """Loggable text of an error: requests exceptions may carry a signed URL, so only their kind."""
    if isinstance(exc, requests.RequestException):
        return f"{type(exc).__name__}" + (" (transient)" if is_transient(exc) else "")
    return f"{type(exc).__name__}: {exc}"
