"""Pieces shared by the Pub/Sub-triggered handlers: Firestore references, follow-on publishes, drop counts."""

from __future__ import annotations

import datetime as dt
import json
import logging
import random
import time
from collections.abc import Mapping
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore as fs
from google.cloud.firestore_v1.field_path import FieldPath

from vigint import clients, config

log = logging.getLogger(__name__)

PUBLISH_TIMEOUT_S = 10.0
# ``publish_once``'s claim: one publish (at most PUBLISH_TIMEOUT_S) plus a margin. A process killed between the
# claim and the flag holds up the follow-on for this long at most: the redelivery answers InProgress until the
# claim lapses, then publishes. (Pub/Sub retries about once a second on the local stack, after 10 s, 20 s, 40 s...
# in Google Cloud; both well within their dead-letter limits of 100 and 10 attempts.)
PUBLISH_LEASE_S = PUBLISH_TIMEOUT_S + 5.0


def tenant_ref(tenant_id: str):
    """``tenants/{tenant_id}``."""
    return clients.firestore().collection("tenants").document(tenant_id)


def event_ref(tenant_id: str, event_id: str):
    """``tenants/{tenant_id}/events/{event_id}``."""
    return tenant_ref(tenant_id).collection("events").document(event_id)


def publish_follow_on(topic_id: str, tenant_id: str, event_id: str, extra: Mapping[str, Any] | None = None) -> str:
    """Publishes ``{"tenant_id", "event_id"}`` (same two attributes) to a follow-on topic and waits.

    ``extra`` adds fields to the data (schema version 2: ``seq`` on ``events-ingested``, ``verdict`` on
    ``events-analyzed``); the attributes stay the two ids.

    Returns:
        The Pub/Sub message id.

    Raises:
        google.api_core.exceptions.GoogleAPICallError: the publish failed (transient: let Pub/Sub retry).
    """
    client = clients.publisher()
    topic = client.topic_path(config.settings().project, topic_id)
    data = json.dumps({"tenant_id": tenant_id, "event_id": event_id, **(extra or {})}).encode()
    return client.publish(topic, data, tenant_id=tenant_id, event_id=event_id).result(timeout=PUBLISH_TIMEOUT_S)


class InProgress(RuntimeError):
    """Another delivery of the same message holds the claim right now (transient: let Pub/Sub redeliver)."""


class OptimisticTransaction:
    """A read-modify-write over a few documents without locks: the optimistic concurrency Firestore allows
    with write preconditions.

    Reads go straight to Firestore (no lock is taken) and remember each document's ``update_time``; the
    writes are committed in one atomic batch in which every write to a document that was read carries a
    precondition: ``last_update_time`` equal to what was read (update, or a set with merge, turned into an
    update of the same field paths), or "does not exist" (create) for a document read as missing. When
    another writer got there first the batch fails as a whole and ``run_optimistic`` starts again from the
    reads. Writes to documents that were not read (counters with ``Increment``) carry no precondition.

    Why not ``@firestore.transactional``: Firestore's server client libraries run pessimistic transactions,
    whose reads lock documents until the commit. Several deliveries of one event (its lifecycle messages,
    the analysis, the alert) read and write the same event document within a second; two locking
    transactions that both read it and then both write it wait for each other until a lock times out: seconds
    lost on the alert's path, and "Transaction lock timeout" aborts on the emulator (measured: 27 aborted
    ingests in one two-camera run). Preconditions: https://cloud.google.com/firestore/docs/manage-data/transactions
    ("Transactions and batched writes", preconditions) and the ``option=`` of ``WriteBatch.update``.

    It offers the subset of ``Transaction`` the handlers use: ``get``, ``get_all``, ``create``, ``set``,
    ``update``.
    """

    def __init__(self, client) -> None:
        self._client = client
        self._reads: dict[str, Any] = {}
        self._writes: list[tuple[str, Any, dict, bool]] = []

    def get(self, ref):
        """The document's snapshot (remembered for the precondition of a later write to it)."""
        snap = ref.get()
        self._reads[ref.path] = snap
        return snap

    def get_all(self, refs) -> list:
        """Snapshots of ``refs`` (in any order, like ``Client.get_all``), remembered as ``get`` does."""
        snaps = list(self._client.get_all(list(refs)))
        for snap in snaps:
            self._reads[snap.reference.path] = snap
        return snaps

    def create(self, ref, data: dict) -> None:
        self._writes.append(("create", ref, data, False))

    def set(self, ref, data: dict, merge: bool = False) -> None:
        self._writes.append(("set", ref, data, merge))

    def update(self, ref, data: dict) -> None:
        self._writes.append(("update", ref, data, False))

    @property
    def writes(self) -> int:
        return len(self._writes)

    def commit(self) -> None:
        """Commits the writes in one batch, with the preconditions above.

        Raises:
            google.api_core.exceptions.FailedPrecondition, AlreadyExists: another writer changed a document
                that was read (``run_optimistic`` retries).
        """
        batch = self._client.batch()
        for op, ref, data, merge in self._writes:
            snap = self._reads.get(ref.path)
            if snap is not None and not snap.exists and op in ("create", "set"):
                batch.create(ref, data)  # read as missing: it must still be missing
            elif snap is not None and snap.exists and (op == "update" or (op == "set" and merge)):
                fields = data if op == "update" else _field_paths(data)
                batch.update(ref, fields, option=self._client.write_option(last_update_time=snap.update_time))
            elif op == "create":
                batch.create(ref, data)
            elif op == "set":
                batch.set(ref, data, merge=merge)
            else:
                batch.update(ref, data)
        batch.commit()


def _field_paths(data: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> dict:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``: what ``set(..., merge=True)`` writes, as ``update`` field paths."""
    out: dict = {}
    for key, value in data.items():
        path = (*prefix, key)
        if isinstance(value, Mapping) and value:
            out.update(_field_paths(value, path))
        else:
            out[FieldPath(*path).to_api_repr()] = value
    return out


OPTIMISTIC_ATTEMPTS = 25


def run_optimistic(fn, *, what: str, attempts: int = OPTIMISTIC_ATTEMPTS):
    """Runs ``fn(tx)`` (an ``OptimisticTransaction``) and commits its writes, again from the reads while another
    writer wins the race (random back-off of up to 5 ms x 2^attempt, at most 0.2 s).

    Returns:
        What ``fn`` returned on the attempt that committed (or wrote nothing).

    Raises:
        InProgress: ``attempts`` commits lost to concurrent writers (transient: let Pub/Sub redeliver).
        google.api_core.exceptions.GoogleAPICallError: Firestore failed otherwise.
    """
    client = clients.firestore()
    for attempt in range(attempts):
        tx = OptimisticTransaction(client)
        result = fn(tx)
        if not tx.writes:
            return result
        try:
            tx.commit()
            return result
        except (gexc.FailedPrecondition, gexc.AlreadyExists, gexc.Aborted):
            time.sleep(random.uniform(0, min(0.2, 0.005 * 2 ** attempt)))
    raise InProgress(f"{what}: lost to concurrent writers {attempts} times")


CLAIM_LEASE_S = 120


def claim(ref, name: str, *, done_field: str | None = None, lease_s: float = CLAIM_LEASE_S,
          now: dt.datetime | None = None) -> str:
    """Claims a one-time step on a document, so concurrent deliveries of one message do it once.

    In one optimistic read-modify-write (``run_optimistic``): if ``done_field`` is truthy the step is done (``"done"``); if ``claims.{name}`` was set
    less than ``lease_s`` seconds ago another delivery is doing it (``"busy"``); otherwise ``claims.{name}``
    becomes ``now`` and the caller owns the step (``"mine"``). A claimer that dies loses the claim after
    ``lease_s`` seconds, so a later redelivery takes over.

    Args:
        ref: the document (must exist).
        name: the step, e.g. ``"publish_ingested"`` (a Firestore field name).
        done_field: field path that is truthy once the step is done, e.g. ``"published.ingested"``.
        lease_s: how long a claim holds, seconds.
        now: current time (UTC).

    Returns:
        ``"mine"``, ``"busy"`` or ``"done"``.

    Raises:
        InProgress: every attempt lost to concurrent deliveries writing the same document; let Pub/Sub
            redeliver.
        google.api_core.exceptions.GoogleAPICallError: Firestore failed (transient).
    """
    now = now or dt.datetime.now(dt.timezone.utc)

    def txn(tx) -> str:
        snap = tx.get(ref)
        if done_field and _flag(snap, done_field):
            return "done"
        try:
            at = as_utc(snap.get(f"claims.{name}"))
        except KeyError:
            at = None
        # A claim stamped after our ``now`` (another delivery read the clock later) holds too.
        if at is not None and (now - at).total_seconds() < lease_s:
            return "busy"
        tx.update(ref, {f"claims.{name}": now})
        return "mine"

    return run_optimistic(txn, what=f"{ref.path}: claim {name}")


def publish_once(ref, flag: str, topic_id: str, tenant_id: str, event_id: str,
                 extra: Mapping[str, Any] | None = None) -> bool:
    """Publishes the follow-on message unless the event document records it was already published.

    The flag (a boolean field on the event document, e.g. ``published.ingested``) is set after the
    publish succeeds, so a crash in between leads to one more publish on redelivery, never to none.
    Concurrent deliveries are serialised by ``claim`` (lease ``PUBLISH_LEASE_S``): the one that loses raises
    ``InProgress`` and is redelivered by Pub/Sub; by then the flag is set, or the claim of a process that died
    mid-publish has lapsed and the redelivery publishes. ``ref`` may be any document holding the flag (e.g. a
    version 2 message's ``messages/{seq:06d}``); ``extra`` as in ``publish_follow_on``.

    Returns:
        True if a message was published now; False if it had been published before.

    Raises:
        InProgress: another delivery is publishing it at this moment.
        google.api_core.exceptions.GoogleAPICallError: Firestore/Pub/Sub failed (transient).
    """
    name = "publish_" + flag.rsplit(".", 1)[-1]
    state = claim(ref, name, done_field=flag, lease_s=PUBLISH_LEASE_S)
    if state == "done":
        return False
    if state == "busy":
        raise InProgress(f"{tenant_id}/{event_id}: {flag} is being published by another delivery")
    try:
        publish_follow_on(topic_id, tenant_id, event_id, extra)
    except BaseException:
        # Let the redelivery publish at once instead of answering InProgress until the lease runs out (on the
        # emulator the subscription's attempts run out first, and the follow-on would never go out).
        try:
            ref.update({f"claims.{name}": fs.DELETE_FIELD})
        except Exception:  # noqa: BLE001 - best effort; the lease expires anyway
            log.exception("%s/%s: could not release the %s claim", tenant_id, event_id, flag)
        raise
    ref.update({flag: True})
    return True


def as_utc(t: Any) -> dt.datetime | None:
    """A Firestore timestamp/datetime as an aware UTC datetime (None for anything else)."""
    if not isinstance(t, dt.datetime):
        return None
    return t.replace(tzinfo=dt.timezone.utc) if t.tzinfo is None else t.astimezone(dt.timezone.utc)


def heartbeat_stale_after_s(device: Mapping[str, Any]) -> float:
    """Seconds without a heartbeat after which a device counts as offline: ``stale_heartbeat_intervals`` times
    its own ``heartbeat_interval_seconds`` (else ``VIGINT_HEARTBEAT_INTERVAL_SECONDS``). The retention job's
    ``device_offline`` alerts and the console's overview both use it."""
    s = config.settings()
    return s.stale_heartbeat_intervals * int(device.get("heartbeat_interval_seconds") or s.heartbeat_interval_seconds)


def retention_days(tenant: Mapping[str, Any] | None) -> int:
    """The tenant's ``retention_days`` (int >= 1), else ``VIGINT_RETENTION_DAYS`` (default 30)."""
    try:
        days = int((tenant or {}).get("retention_days") or 0)
    except (TypeError, ValueError):
        days = 0
    return days if days >= 1 else config.settings().retention_days


def tenant_timezone(tenant: Mapping[str, Any] | None) -> str | None:
    """The tenant's IANA time zone: ``timezone``, else ``quiet_hours.timezone``; None if unset or unknown."""
    from zoneinfo import ZoneInfo

    tenant = tenant or {}
    for name in (tenant.get("timezone"), (tenant.get("quiet_hours") or {}).get("timezone")):
        if isinstance(name, str) and name:
            try:
                ZoneInfo(name)
                return name
            except Exception:  # noqa: BLE001 - ZoneInfoNotFoundError, ValueError for odd keys
                log.warning("unknown time zone %r in tenant settings; ignored", name[:64])
    return None


def _flag(snap, field: str) -> bool:
    try:
        return bool(snap.get(field))
    except KeyError:
        return False


def count_drop(stage: str, reason: str, **context: str) -> None:
    """Logs a permanently failing message and counts it in ``stats/{stage}_drops`` (``{reason}: n``).

    Args:
        stage: the handler, e.g. ``"ingest"``.
        reason: a snake_case reason, e.g. ``"bad_signature"``.
        context: identifiers worth logging (never secrets).
    """
    log.warning("%s: dropping message: %s %s", stage, reason,
                " ".join(f"{k}={v!r}" for k, v in context.items()))
    try:
        clients.firestore().collection("stats").document(f"{stage}_drops").set(
            {reason: fs.Increment(1), "total": fs.Increment(1), "last_reason": reason,
             "last_at": fs.SERVER_TIMESTAMP},
            merge=True,
        )
    except Exception:  # counting must never turn a permanent drop into a retry loop
        log.exception("%s: could not count drop %s", stage, reason)
