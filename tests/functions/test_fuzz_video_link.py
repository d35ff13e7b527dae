"""Property-based run against the stack's ``video_link`` process (functions-framework over HTTP, Firestore
emulator, fake-gcs-server): random and hostile paths, link tokens (real ones of a live link to an mp4 event
and to an HLS event, of an expired, a revoked and an event-less link, with suffixes; guessed and malformed
ones), methods and headers.

Asserts: no answer is a 5xx. Prints the request count and status counts (for the note).
"""

from __future__ import annotations

import collections
import datetime as dt
import time
from urllib.parse import quote

import requests
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.functions import hostile

MAX_EXAMPLES = 250
UTC = dt.timezone.utc


def test_no_5xx_from_video_link(stack, fenv):
    from vigint import links

    creds = fenv.provision()
    ev = fenv.ingested_event(creds)
    now = dt.datetime.now(UTC)
    live, _, _ = links.create_link(tenant_id=creds["tenant_id"], event_id=ev["event_id"], recipient="a@example.com",
                                   ttl_seconds=3600, now=now)
    expired, _, _ = links.create_link(tenant_id=creds["tenant_id"], event_id=ev["event_id"],
                                      recipient="b@example.com", ttl_seconds=60, now=now - dt.timedelta(days=2))
    revoked, revoked_id, _ = links.create_link(tenant_id=creds["tenant_id"], event_id=ev["event_id"],
                                               recipient="c@example.com", ttl_seconds=3600, now=now)
    links.revoke(revoked_id)
    gone, _, _ = links.create_link(tenant_id=creds["tenant_id"], event_id="evt_no_such_event_00", recipient="d@x.io",
                                   ttl_seconds=3600, now=now)
    # A version 2 event (HLS segments), so that playlist.m3u8 and state.json have something to list.
    from tests.functions import v2
    from vigint import ingest

    life = v2.Lifecycle(creds=creds, media=fenv.media, segments=v2.ts_segments(2), start=now - dt.timedelta(hours=1))
    msgs = life.standard(updates=1)
    life.upload(msgs)
    for msg in msgs:
        data, attrs = v2.signed(creds, msg)
        assert ingest.handle_edge_event(data=data, attributes=attrs, now=now) in ("created", "applied")
    hls, _, _ = links.create_link(tenant_id=creds["tenant_id"], event_id=life.event_id, recipient="e@example.com",
                                  ttl_seconds=3600, now=now)
    base = stack.urls["video_link"]
    assert requests.get(f"{base}/v/{live}", timeout=30).status_code == 200
    assert requests.get(f"{base}/v/{hls}/playlist.m3u8", timeout=30).status_code == 200
    session = requests.Session()
    stats: collections.Counter = collections.Counter()
    by_kind: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    problems: list[str] = []

    real = [live, hls, hls, expired, revoked, gone]
    tokens = {
        "real": st.sampled_from(real),
        "near": st.sampled_from([live[:-1], live + "A", live.upper(), "A" * 43, "_" * 43, "__" + live[2:-2] + "__"]),
        "guessed": st.from_regex(r"[A-Za-z0-9_-]{30,130}", fullmatch=True),
        "hostile": hostile.hostile_text,
    }
    suffixes = st.sampled_from(["", "", "", "/", "/playlist.m3u8", "/state.json", "/state.json", "/state.json/", "//",
                                "/x", "/playlist.m3u8/extra", "/../state.json", "/%2e%2e", "?a=1", "#x", ";x", None])
    hostile_suffix = hostile.hostile_text.map(lambda v: "/" + quote(v, safe=""))
    static_names = st.one_of(st.sampled_from([
        "player.js", "player.css", "hls.light.min.js", "hls.js.LICENSE", "../main.py", "", ".", "..", "%00",
        "vendor/hls.js.LICENSE", "player.js/"]), hostile.hostile_text.map(lambda v: quote(v, safe="")))
    others = st.one_of(st.sampled_from(["/", "/v", "/v/", "//v/x", "/v/static", "/v/static/", "/V/" + live,
                                        "/v//" + live, "/v/" + live + "/state.json?x=" + "a" * 3000]),
                       hostile.header_text.map(lambda v: "/" + quote(v, safe="/")))
    kinds = ["real"] * 4 + ["near", "guessed", "hostile", "static", "other"]
    methods = st.sampled_from(["GET"] * 8 + ["HEAD"] * 2 + ["POST", "PUT", "DELETE", "OPTIONS", "PATCH"])
    headers_st = st.dictionaries(
        st.sampled_from(["User-Agent", "Range", "If-None-Match", "If-Modified-Since", "Accept", "Accept-Encoding",
                         "X-Forwarded-For", "Cookie", "Referer", "Origin"]),
        st.one_of(hostile.header_text, st.sampled_from(["bytes=0-", "bytes=-1", "bytes=99999999-", "*", "gzip"])),
        max_size=3)

    @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, derandomize=True,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def one(data):
        kind = data.draw(st.sampled_from(kinds), "kind")
        if kind == "static":
            path = "/v/static/" + data.draw(static_names, "name")
        elif kind == "other":
            path = data.draw(others, "path")
        else:
            suffix = data.draw(suffixes, "suffix")
            if suffix is None:
                suffix = data.draw(hostile_suffix, "hostile_suffix")
            path = "/v/" + quote(data.draw(tokens[kind], "token"), safe="") + suffix
        method, headers = data.draw(methods, "method"), data.draw(headers_st, "headers")
        r = session.request(method, base + path, headers=headers, timeout=30, allow_redirects=False)
        stats[r.status_code] += 1
        by_kind[kind][r.status_code] += 1
        if r.status_code >= 500:
            problems.append(f"{method} {path} {headers} -> {r.status_code} {r.text[:200]}")

    started = time.monotonic()
    one()
    elapsed = time.monotonic() - started
    print(f"\nvideo_link fuzz: {sum(stats.values())} requests in {elapsed:.1f} s; "
          f"status counts {dict(sorted(stats.items()))}")
    for kind, c in sorted(by_kind.items()):
        print(f"  {kind}: {dict(sorted(c.items()))}")
    assert not problems, "\n".join(problems[:20])
    assert stats[200] > 0 and stats[404] > 0 and stats[410] > 0, stats
