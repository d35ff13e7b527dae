"""Property-based run of schemathesis against ``/openapi.json`` of the in-process tenant_api (WSGI).

Every operation gets ``MAX_EXAMPLES`` schema-valid requests and ``NEGATIVE_EXAMPLES`` schema-violating ones,
sent with a valid admin key so they get past authentication, against the real Firestore emulator and
fake-gcs-server. Operations with path parameters also get requests aimed at objects that exist (the
tenant's device, camera and event), so bodies and queries reach the handlers' storage code. The test
asserts that no answer is a 5xx and that every 4xx carries ``{"error", "field"}``; it prints the figures.
"""

from __future__ import annotations

import collections
import datetime as dt
import time

import pytest

MAX_EXAMPLES = 30  # schema-valid requests per operation (and per real-object variant)
NEGATIVE_EXAMPLES = 15  # schema-violating requests per operation
UTC = dt.timezone.utc


@pytest.fixture
def app(fenv):
    import functions_framework

    return functions_framework.create_app(target="tenant_api", source="functions/main.py", signature_type="http")


def test_no_5xx_for_any_generated_request(fenv, app):
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from schemathesis.generation import GenerationMode

    from vigint import provisioning

    creds = fenv.provision(recipients=["ops@example.com"])
    tenant_id = creds["tenant_id"]
    admin = provisioning.create_api_key(tenant_id, "admin", "Fuzzer")
    auth = {"Authorization": f"Bearer {admin['key']}"}
    client = app.test_client()
    assert client.post("/v1/cameras", headers=auth, json={"camera_id": "lobby", "device_id": "nuc-1", "zones": [
        {"name": "door", "points": [[0.1, 0.1], [0.6, 0.1], [0.6, 0.8]]}]}).status_code == 201
    start = (dt.datetime.now(UTC) - dt.timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    event = fenv.ingested_event(creds, start_time=start, end_time=start)
    from vigint import pipeline

    pipeline.event_ref(tenant_id, event["event_id"]).update(
        {"analysis": {"status": "ok", "source": "detections", "threat_level": 3, "title": "t", "summary": "s"},
         "alert": {"alerted": True, "decided_at": dt.datetime.now(UTC), "reason": "test"}})
    real_ids = {"device_id": "nuc-1", "camera_id": "lobby", "event_id": event["event_id"]}

    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    stats: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    problems: list[str] = []
    started = time.monotonic()

    def run(operation, mode, path_parameters=None) -> None:
        # Valid requests carry the admin key; invalid ones may also get a generated (bad) Authorization.
        fixed = auth if mode == GenerationMode.POSITIVE else None
        strategy = operation.as_strategy(generation_mode=mode, path_parameters=path_parameters, headers=fixed)

        @settings(max_examples=MAX_EXAMPLES if mode == GenerationMode.POSITIVE else NEGATIVE_EXAMPLES, deadline=None, database=None, derandomize=True,
                  phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(case=strategy)
        def one(case) -> None:
            resp = case.call(headers=auth)
            stats[operation.label][resp.status_code] += 1
            if resp.status_code >= 500:
                problems.append(f"{operation.label} [{mode}] -> {resp.status_code}: {case.as_curl_command()}")
            elif resp.status_code >= 400:
                try:
                    body = resp.json()
                except ValueError:  # not JSON (say which request, rather than fail on the parse)
                    problems.append(f"{operation.label} [{mode}] -> {resp.status_code} not JSON "
                                    f"({resp.text[:80]!r}): {case.as_curl_command()}")
                    return
                if not (isinstance(body, dict) and "error" in body and "field" in body):
                    problems.append(f"{operation.label} -> {resp.status_code} without error/field: {body}")

        one()

    # Revoking the real device last, so rotate-key and commands on it run while it is active.
    operations = sorted((r.ok() for r in schema.get_all_operations()), key=lambda op: op.label.endswith("/revoke"))
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            run(operation, mode)
        names = {p.name for p in operation.path_parameters}
        if names and names <= set(real_ids) and operation.method.upper() != "DELETE":
            run(operation, GenerationMode.POSITIVE, {n: real_ids[n] for n in names})
    elapsed = time.monotonic() - started

    total = sum(sum(c.values()) for c in stats.values())
    by_status = collections.Counter()
    for c in stats.values():
        by_status.update(c)
    print(f"\nschemathesis: {len(operations)} operations, {total} requests in {elapsed:.1f} s; "
          f"status counts {dict(sorted(by_status.items()))}")
    for label, c in sorted(stats.items()):
        print(f"  {label}: {dict(sorted(c.items()))}")
    from vigint.tenant_api.routes import ROUTES

    # Every documented operation ran (schemathesis leaves out the document's own route).
    assert {op.label for op in operations} == {f"{r.method} {r.path}" for r in ROUTES} - {"GET /openapi.json"}
    assert not problems, "\n".join(problems[:20])
    # Every operation got past authentication (Hypothesis stops early when an operation has few inputs).
    assert all(sum(n for status, n in c.items() if status != 401) > 0 for c in stats.values()), stats
    # Valid requests did reach the handlers: successes on reads and writes alike.
    assert by_status[200] > 0 and by_status[201] > 0 and by_status[400] > 0
