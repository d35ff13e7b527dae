"""Cloud Functions entry points (functions-framework). Each one only unpacks its request or CloudEvent and
calls one keyword-argument function in ``vigint``; see docs/contracts.md for what each does."""

from __future__ import annotations

import base64
import binascii
import logging
import os

import functions_framework

from vigint import alert as _alert
from vigint import clients as _clients
from vigint import console as _console
from vigint import analyze as _analyze
from vigint import edge_api as _edge_api
from vigint import ingest as _ingest
from vigint import retention as _retention
from vigint import tenant_api as _tenant_api
from vigint import video_link as _video_link

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
if os.environ.get("K_SERVICE"):  # a deployed function (Cloud Run sets K_SERVICE; so does the local stack)
    # Off the request path, so an alert's first hop does not build the clients; in the server's worker process
    # (functions-framework imports this file in gunicorn's master and forks the worker; a gRPC channel must not
    # cross a fork).
    os.register_at_fork(after_in_child=_clients.warm_in_background)


def _pubsub_message(cloud_event) -> tuple[bytes, dict, str | None]:
    """(data, attributes, message id) of a ``google.cloud.pubsub.topic.v1.messagePublished`` CloudEvent.

    Data that is not base64 (Pub/Sub never sends that; a forged push could) becomes ``b""``, which every
    handler drops as a bad message (counted), instead of a 500 that would be pushed again."""
    message = (cloud_event.data or {}).get("message") or {}
    try:
        data = base64.b64decode(message.get("data") or b"", validate=True)
    except (binascii.Error, TypeError, ValueError):
        logging.getLogger(__name__).warning("push message data is not base64; handled as empty")
        data = b""
    return data, dict(message.get("attributes") or {}), message.get("messageId") or message.get("message_id")


@functions_framework.http
def edge_api(request):
    """HTTPS API of the edge devices (``/v1/uploads``, ``/v1/publish-credentials``, ``/v1/heartbeat``,
    ``/v1/enroll``, ``/v1/commands/{command_id}/result``); ``vigint.edge_api.handle`` routes on the path."""
    return _edge_api.handle(method=request.method, path=request.path, headers=request.headers,
                            body=request.get_data(cache=False))


@functions_framework.http
def video_link(request):
    """Expiring video-link page ``/v/{token}``."""
    return _video_link.handle(method=request.method, path=request.path, remote_addr=request.remote_addr,
                              user_agent=request.headers.get("User-Agent"))


@functions_framework.cloud_event
def ingest(cloud_event):
    """``edge-events`` -> Firestore event document -> ``events-ingested``."""
    data, attributes, message_id = _pubsub_message(cloud_event)
    _ingest.handle_edge_event(data=data, attributes=attributes, message_id=message_id)


@functions_framework.cloud_event
def analyze(cloud_event):
    """``events-ingested`` -> analysis on the event -> ``events-analyzed``."""
    data, attributes, message_id = _pubsub_message(cloud_event)
    _analyze.handle_ingested(data=data, attributes=attributes, message_id=message_id)


@functions_framework.cloud_event
def alert(cloud_event):
    """``events-analyzed`` -> alert e-mails."""
    data, attributes, message_id = _pubsub_message(cloud_event)
    _alert.handle_analyzed(data=data, attributes=attributes, message_id=message_id)


@functions_framework.http
def tenant_api(request):
    """Tenant API (``/v1/tenant``, ``/v1/devices``, ``/v1/cameras``, ``/v1/events``, ``/v1/alerts``, ...)."""
    if (request.content_length or 0) > _tenant_api.MAX_BODY_BYTES:
        return {"error": "request body too large", "field": "body"}, 413
    return _tenant_api.handle(method=request.method, path=request.path, headers=request.headers,
                              query=request.args.to_dict(flat=True),
                              body=request.get_data(cache=False)[:_tenant_api.MAX_BODY_BYTES + 1])


@functions_framework.http
def retention(request):
    """Scheduled housekeeping (Cloud Scheduler, OIDC-authenticated in Google Cloud): retention deletes and
    stale-device health alerts."""
    return _retention.handle_http(method=request.method)


@functions_framework.http
def console(request):
    """The operator console (server-rendered pages, ``vigint.console``)."""
    from flask import Response

    if (request.content_length or 0) > _console.MAX_FORM_BYTES:
        return "request body too large\n", 413
    form = request.form.to_dict(flat=False) if request.method not in ("GET", "HEAD") else {}
    # Behind Google's front end the client's address is the last X-Forwarded-For entry (the front end appends it;
    # earlier entries are whatever the client sent).
    remote = (request.headers.get("X-Forwarded-For") or "").split(",")[-1].strip() or request.remote_addr
    body, status, headers = _console.handle(method=request.method, path=request.path, headers=request.headers,
                                            query=request.args.to_dict(flat=True), form=form, remote_addr=remote)
    response = Response(body, status=status)
    for name, value in headers.items():
        if isinstance(value, list):  # Set-Cookie, several
            for v in value:
                response.headers.add(name, v)
        else:
            response.headers[name] = value
    return response
