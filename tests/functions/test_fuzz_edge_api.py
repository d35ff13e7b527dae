"""Property-based run against the stack's ``edge_api`` process (functions-framework over HTTP, Firestore
emulator, fake-gcs-server): random and hostile paths, methods, headers and bodies, with valid device
credentials, with another device's or garbage ones, and without any; every route (``/v1/uploads``,
``/v1/publish-credentials``, ``/v1/heartbeat``, ``/v1/commands/{id}/result``, ``/v1/enroll``) and others.

Asserts: no answer is a 5xx; every answer is JSON with an ``error`` when it is a 4xx. Prints the request count
and status counts (for the note).
"""

from __future__ import annotations

import collections
import json
import time
from urllib.parse import quote

import requests
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.functions import hostile

MAX_EXAMPLES = 300
ROUTES = ["/v1/uploads", "/v1/publish-credentials", "/v1/heartbeat", "/v1/enroll", "/v1/commands/{cid}/result"]

_file = st.fixed_dictionaries({
    "name": st.one_of(st.sampled_from(["clip.mp4", "snapshot.jpg", "segments/00001.ts", "snapshots/00002.jpg"]),
                      hostile.hostile_text),
    "content_type": st.one_of(st.sampled_from(["video/mp4", "image/jpeg", "video/mp2t"]), hostile.hostile_text),
    "bytes": st.one_of(st.integers(min_value=0, max_value=600 * 1024 * 1024), hostile.json_values),
})
_event_id = st.one_of(st.from_regex(r"evt_[A-Za-z0-9_-]{10,20}", fullmatch=True),
                      st.sampled_from(hostile.RESERVED_IDS), hostile.hostile_text)
_free_map = st.dictionaries(hostile.hostile_text, hostile.json_values, max_size=5)
# Near-valid bodies of each route, with hostile values where the route takes them.
STRUCTURED = {
    "/v1/uploads": st.fixed_dictionaries({"event_id": _event_id, "files": st.lists(_file, max_size=4)}),
    "/v1/heartbeat": st.fixed_dictionaries({}, optional={
        "cameras": st.one_of(_free_map, hostile.json_values), "spool": st.one_of(_free_map, hostile.json_values),
        "version": st.one_of(hostile.hostile_text, hostile.json_values)}),
    "/v1/commands/{cid}/result": st.fixed_dictionaries(
        {"status": st.one_of(st.sampled_from(["done", "failed"]), hostile.hostile_text)},
        optional={"detail": st.one_of(hostile.hostile_text, hostile.json_values),
                  "result": st.one_of(_free_map, hostile.json_values), "event_id": st.one_of(_event_id, st.none())}),
    "/v1/enroll": st.fixed_dictionaries({"code": st.one_of(st.from_regex(r"[A-Z0-9]{4}-[A-Z0-9]{4}", fullmatch=True),
                                                           hostile.hostile_text, hostile.json_values)}),
    "/v1/publish-credentials": st.just({}),
}
# How often each kind of path is drawn (out of the list's length).
PATH_KINDS = ["/v1/uploads"] * 3 + ["/v1/heartbeat"] * 3 + ["/v1/commands/{cid}/result"] * 2 + ["/v1/enroll"] * 2 + [
    "/v1/publish-credentials", "other", "other"]
OTHER_PATHS = ["/", "/v1", "/v1/", "/v1/uploads/", "/v1/commands//result", "/v1/commands/a/b/result", "/v1/enroll/x",
               "//v1/uploads", "/v1/UPLOADS", "/v1/%2e%2e/uploads", "/v1/heartbeat/..", "/v1/commands/%00/result"]


def test_no_5xx_from_edge_api(stack, fenv):
    creds = fenv.provision()
    other = fenv.provision(tenant_id=creds["tenant_id"], device_id="box-2")
    valid = {"Authorization": f"Bearer {creds['secret']}", "X-Vigint-Tenant": creds["tenant_id"],
             "X-Vigint-Device": creds["device_id"]}
    base = stack.urls["edge_api"]
    session = requests.Session()
    stats: collections.Counter = collections.Counter()
    by_route: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    problems: list[str] = []

    auth_variants = st.one_of(
        st.just(valid), st.just(valid), st.just(valid),
        st.just({}),
        st.just({**valid, "Authorization": f"Bearer {other['secret']}"}),
        st.fixed_dictionaries({}, optional={"Authorization": hostile.header_text.map(lambda v: "Bearer " + v),
                                            "X-Vigint-Tenant": st.one_of(st.just(creds["tenant_id"]),
                                                                         hostile.header_text),
                                            "X-Vigint-Device": st.one_of(st.just(creds["device_id"]),
                                                                         hostile.header_text)}),
    )
    command_id = st.one_of(st.from_regex(r"[A-Za-z0-9]{1,20}", fullmatch=True), st.sampled_from(hostile.RESERVED_IDS),
                           hostile.header_text)
    methods = st.sampled_from(["POST"] * 12 + ["GET", "PUT", "DELETE", "PATCH", "OPTIONS"])
    extra_headers = st.dictionaries(
        st.sampled_from(["Content-Type", "Content-Encoding", "X-Forwarded-For", "Accept", "X-Cloud-Trace-Context"]),
        hostile.header_text, max_size=2)

    @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, derandomize=True,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def one(data):
        kind = data.draw(st.sampled_from(PATH_KINDS), "kind")
        if kind == "other":
            path = data.draw(st.one_of(st.sampled_from(OTHER_PATHS), hostile.header_text.map(
                lambda v: "/" + quote(v, safe="/"))), "path")
        else:
            path = kind.format(cid=quote(data.draw(command_id, "command_id"), safe=""))
        method = data.draw(methods, "method")
        headers = {**data.draw(extra_headers, "extra"), **data.draw(auth_variants, "auth")}
        body = data.draw(st.one_of(STRUCTURED.get(kind, st.just({})).map(lambda v: json.dumps(v).encode()),
                                   hostile.body_bytes()), "body")
        r = session.request(method, base + path, data=body, headers=headers, timeout=30)
        stats[r.status_code] += 1
        by_route[kind][r.status_code] += 1
        if r.status_code >= 500:
            problems.append(f"{method} {path} {headers} {body[:200]!r} -> {r.status_code} {r.text[:200]}")
        elif r.status_code >= 400:
            try:
                ok = "error" in r.json()
            except ValueError:
                ok = False
            if not ok:
                problems.append(f"{method} {path} -> {r.status_code} without an error body: {r.text[:200]}")

    started = time.monotonic()
    one()
    elapsed = time.monotonic() - started
    total = sum(stats.values())
    print(f"\nedge_api fuzz: {total} requests in {elapsed:.1f} s; status counts {dict(sorted(stats.items()))}")
    for route, c in sorted(by_route.items()):
        print(f"  {route}: {dict(sorted(c.items()))}")
    assert not problems, "\n".join(problems[:20])
    # The requests got past authentication and reached the handlers, not only the 401.
    assert stats[200] > 0 and stats[400] > 0 and stats[401] > 0, stats
