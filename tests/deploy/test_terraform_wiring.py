"""terraform/ deploys what the code needs: every entry point of functions/main.py with the right trigger,
every environment variable the functions read, the documented least-privilege IAM, and the storage,
Pub/Sub and Firestore settings of the brief. Everything is read from the code and the HCL, offline."""

from __future__ import annotations

import ast
import re

import pytest

from infra import deploy_tools

pytestmark = pytest.mark.slow  # needs .venv-deploy (python-hcl2), built on first use in about 1.5 min

REPO = deploy_tools.REPO
MAIN = REPO / "functions" / "main.py"
CONFIG = REPO / "functions" / "vigint" / "config.py"

# docs/contracts.md: which topic feeds which CloudEvent function.
TOPIC_OF = {"ingest": "edge-events", "analyze": "events-ingested", "alert": "events-analyzed"}
# HTTP functions anyone may call (they authenticate requests themselves); other HTTP functions are private.
PUBLIC = {"edge_api", "video_link", "tenant_api", "console"}
# Private HTTP functions and what invokes them.
SCHEDULED = {"retention"}
# Used only when functions/main.py does not exist yet.
FALLBACK_ENTRY_POINTS = {"edge_api": "http", "video_link": "http", "ingest": "cloud_event",
                         "analyze": "cloud_event", "alert": "cloud_event"}

# Variables that exist only to point the code at local stand-ins; Terraform must not set them.
LOCAL_ONLY = {
    "FIRESTORE_EMULATOR_HOST": "Firestore emulator",
    "PUBSUB_EMULATOR_HOST": "Pub/Sub emulator",
    "STORAGE_EMULATOR_HOST": "fake-gcs-server",
    "GOOGLE_APPLICATION_CREDENTIALS": "a generated key to sign URLs locally; in Google Cloud signBlob is used",
    "GOOGLE_GEMINI_BASE_URL": "points google-genai at the test fake of the Gemini API",
    "VIGINT_EXPORT_SIGNING_KEY_FILE": "the local stack's export signing key; in Google Cloud Cloud KMS signs",
}
# Read by the code but deliberately not deployed yet (each is in the final report).
NOT_DEPLOYED = {
    "VIGINT_SMTP_CA_FILE": "a CA file path; needs a secret volume mount, not built (public relays need none)",
}
# Set by the platform itself: Cloud Run gives every function K_SERVICE (its service name); Terraform must not.
PLATFORM = {"K_SERVICE": "Cloud Run's service name, set on every instance (functions/main.py warms clients)"}
# Secrets only the function using them may read (all others are set on every function).
SCOPED_SECRETS = {"GEMINI_API_KEY": {"analyze"}, "VIGINT_SMTP_PASSWORD": {"alert", "console"}}
SECRET_VARIABLES = {"VIGINT_DEVICE_KEY_SECRET", *SCOPED_SECRETS}


def entry_points() -> dict[str, str]:
    """``{function name: "http" | "cloud_event"}`` from the functions_framework decorators of main.py."""
    if not MAIN.exists():
        return dict(FALLBACK_ENTRY_POINTS)
    found = {}
    for node in ast.parse(MAIN.read_text()).body:
        if not isinstance(node, ast.FunctionDef):
            continue
        for dec in node.decorator_list:
            dec = dec.func if isinstance(dec, ast.Call) else dec
            name = dec.attr if isinstance(dec, ast.Attribute) else getattr(dec, "id", None)
            if name in ("http", "cloud_event"):
                found[node.name] = name
    return found


def env_vars_read_by_code() -> set[str]:
    """Names in ``vigint.config.ENV`` plus every literal ``os.environ[...]``/``.get``/``os.getenv`` in functions/."""
    names: set[str] = set()
    if CONFIG.exists():
        for node in ast.walk(ast.parse(CONFIG.read_text())):
            if (isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "ENV" for t in node.targets)
                    and isinstance(node.value, ast.Dict)):
                names |= {k.value for k in node.value.keys if isinstance(k, ast.Constant)}
    else:  # before config.py exists: the table of docs/contracts.md
        table = (REPO / "docs" / "contracts.md").read_text().split("## Functions' environment")[1]
        names |= set(re.findall(r"`([A-Z][A-Z0-9_]{3,})`", table))
    for path in (REPO / "functions").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
                f = node.func
                text = ast.unparse(f)
                if text in ("os.environ.get", "os.getenv", "environ.get", "getenv"):
                    names.add(node.args[0].value)
            if (isinstance(node, ast.Subscript) and ast.unparse(node.value) in ("os.environ", "environ")
                    and isinstance(node.slice, ast.Constant)):
                names.add(node.slice.value)
    return {n for n in names if isinstance(n, str)}


def refs(expr: str) -> str:
    """An HCL expression without whitespace, for comparing shapes."""
    return re.sub(r"\s+", "", expr)


def test_code_inventory_is_found():
    eps, env = entry_points(), env_vars_read_by_code()
    assert {"edge_api", "video_link", "ingest", "analyze", "alert"} <= set(eps)
    assert {"GOOGLE_CLOUD_PROJECT", "VIGINT_BUCKET", "VIGINT_DEVICE_KEY_SECRET"} <= env


# --- functions and their triggers ------------------------------------------------------------------------------


def test_every_entry_point_is_a_deployed_function(tf):
    functions = tf.locals["functions"]
    assert set(functions) == set(entry_points()), "local.functions must hold exactly main.py's entry points"
    fn = tf.resource("google_cloudfunctions2_function", "fn")
    assert fn["for_each"] == "${local.functions}"
    build = fn["build_config"][0]
    assert build["entry_point"] == "${each.key}"  # the key of local.functions is the Python function name
    assert build["runtime"] == "python311"
    storage = build["source"][0]["storage_source"][0]
    assert storage["object"] == "${google_storage_bucket_object.functions_source.name}"
    assert "event_trigger" not in fn, "pipeline functions are invoked by push subscriptions (pubsub.tf)"
    for key, f in functions.items():
        assert re.fullmatch(r"[a-z][a-z0-9-]{0,61}[a-z0-9]", f["name"]), f"{key}: not a valid Cloud Run name"


def test_one_source_zip_named_by_its_hash(tf):
    archive = tf.data[("archive_file", "functions")]
    assert archive["type"] == "zip" and archive["source_dir"] == "${var.functions_source_dir}"
    assert tf.variables["functions_source_dir"]["default"] == "../functions"
    obj = tf.resource("google_storage_bucket_object", "functions_source")
    assert "data.archive_file.functions.output_sha256" in obj["name"]
    assert len(tf.of_type("google_storage_bucket_object")) == 1


def test_http_functions_are_http_and_cloud_event_functions_are_pushed_from_their_topic(tf):
    functions = tf.locals["functions"]
    for name, kind in entry_points().items():
        if kind == "http":
            assert functions[name]["topic"] is None, f"{name} is an HTTP function"
            assert functions[name]["public"] is (name in PUBLIC), f"{name}: public only if in {PUBLIC}"
            assert name in PUBLIC or name in SCHEDULED, f"{name}: private HTTP function nobody invokes"
        else:
            assert functions[name]["topic"] == TOPIC_OF[name], f"{name} must be triggered by {TOPIC_OF[name]}"
            assert functions[name]["public"] is False
    assert refs(tf.locals["pipeline_functions"]) == "${{fork,finlocal.functions:k=>fiff.topic!=null}}"
    assert refs(tf.locals["public_functions"]) == "${{fork,finlocal.functions:k=>fiff.public}}"

    push = tf.resource("google_pubsub_subscription", "push")
    assert push["for_each"] == "${local.pipeline_functions}"
    assert push["name"] == "${each.key}-push"  # ingest-push, analyze-push, alert-push (docs/contracts.md)
    assert push["topic"] == "${google_pubsub_topic.pipeline[each.value.topic].id}"
    cfg = push["push_config"][0]
    assert cfg["push_endpoint"] == "${google_cloudfunctions2_function.fn[each.key].service_config[0].uri}"
    assert cfg["oidc_token"][0]["service_account_email"] == "${google_service_account.invoker[each.key].email}"

    public = tf.resource("google_cloud_run_v2_service_iam_member", "public_invoker")
    assert public["for_each"] == "${local.public_functions}" and public["member"] == "allUsers"
    private = tf.resource("google_cloud_run_v2_service_iam_member", "push_invoker")
    assert private["for_each"] == "${local.pipeline_functions}"
    assert private["member"] == "${google_service_account.invoker[each.key].member}"
    assert private["role"] == public["role"] == "roles/run.invoker"
    fn = tf.resource("google_cloudfunctions2_function", "fn")
    assert refs(fn["service_config"][0]["ingress_settings"]) == '${each.value.public?"ALLOW_ALL":"ALLOW_INTERNAL_ONLY"}'


def test_the_functions_on_an_alerts_path_are_kept_warm(tf):
    """An alert passes edge_api (the start's upload URLs), ingest, analyze, alert and then video_link (the
    page opened from the e-mail): each keeps var.warm_instances started (no cold start on the alert's path);
    the others start on demand."""
    functions = tf.locals["functions"]
    assert {n for n, f in functions.items() if f["warm"]} == {"edge_api", "ingest", "analyze", "alert", "video_link"}
    fn = tf.resource("google_cloudfunctions2_function", "fn")
    assert refs(fn["service_config"][0]["min_instance_count"]) == "${each.value.warm?var.warm_instances:0}"
    assert tf.variables["warm_instances"]["default"] == 1


def test_retention_runs_on_a_schedule_as_a_private_function(tf):
    assert SCHEDULED <= set(entry_points())
    job = tf.resource("google_cloud_scheduler_job", "retention")
    target = job["http_target"][0]
    assert target["uri"] == '${google_cloudfunctions2_function.fn["retention"].service_config[0].uri}'
    assert target["oidc_token"][0]["service_account_email"] == "${google_service_account.scheduler.email}"
    invoker = tf.resource("google_cloud_run_v2_service_iam_member", "scheduler_invoker")
    assert invoker["name"] == '${google_cloudfunctions2_function.fn["retention"].service_config[0].service}'
    assert (invoker["role"], invoker["member"]) == ("roles/run.invoker", "${google_service_account.scheduler.member}")
    assert tf.locals["functions"]["retention"]["timeout"] <= 1800  # Cloud Scheduler's HTTP attempt limit


def test_topics_have_dead_letter_topics_retries_and_the_service_agent_bindings(tf):
    assert set(tf.locals["topics"]) == set(TOPIC_OF.values())
    for name in ("pipeline", "dead_letter"):
        assert tf.resource("google_pubsub_topic", name)["for_each"] == "${local.topics}"
    push = tf.resource("google_pubsub_subscription", "push")
    dlq = push["dead_letter_policy"][0]
    assert dlq["dead_letter_topic"] == "${google_pubsub_topic.dead_letter[each.value.topic].id}"
    assert dlq["max_delivery_attempts"] == "${var.max_delivery_attempts}"
    assert tf.variables["max_delivery_attempts"]["default"] == 10
    assert push["retry_policy"][0]["minimum_backoff"] and push["retry_policy"][0]["maximum_backoff"]
    # A dead-letter topic nobody subscribes to drops messages.
    hold = tf.resource("google_pubsub_subscription", "dead_letter_hold")
    assert hold["topic"] == "${google_pubsub_topic.dead_letter[each.key].id}"

    agent = refs(tf.locals["pubsub_service_agent"])
    assert agent == "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
    pub = tf.resource("google_pubsub_topic_iam_member", "dead_letter_publisher")
    assert (pub["topic"], pub["role"], pub["member"]) == (
        "${google_pubsub_topic.dead_letter[each.key].id}", "roles/pubsub.publisher", "${local.pubsub_service_agent}")
    sub = tf.resource("google_pubsub_subscription_iam_member", "dead_letter_subscriber")
    assert (sub["subscription"], sub["role"], sub["member"]) == (
        "${google_pubsub_subscription.push[each.key].name}", "roles/pubsub.subscriber", "${local.pubsub_service_agent}")


# --- environment -----------------------------------------------------------------------------------------------


def function_environment(tf) -> dict[str, dict[str, str]]:
    """``{function: {variable: "env" | "secret"}}`` as functions.tf builds it from local.common_env,
    the per-function additions in ``merge(...)`` and ``local.functions[*].secrets``."""
    fn = tf.resource("google_cloudfunctions2_function", "fn")
    service = fn["service_config"][0]
    merged = refs(service["environment_variables"])
    m = re.fullmatch(r"\$\{merge\(local\.common_env,\{(.*)\}\)\}", merged)
    assert m, f"environment_variables must be merge(local.common_env, {{...}}), not {merged}"
    extra = re.findall(r"([A-Z][A-Z0-9_]+)=", m.group(1))
    dyn = next(d["secret_environment_variables"] for d in service["dynamic"] if "secret_environment_variables" in d)
    assert dyn["for_each"] == "${each.value.secrets}"
    content = dyn["content"][0]
    assert content["key"] == "${secret_environment_variables.key}"
    assert content["secret"] == "${google_secret_manager_secret.secret[secret_environment_variables.value].secret_id}"
    out = {}
    for name, f in tf.locals["functions"].items():
        env = {k: "env" for k in [*tf.locals["common_env"], *extra]}
        for k in f["secrets"]:
            assert k not in env, f"{name}: {k} is both a plain variable and a secret"
            env[k] = "secret"
        out[name] = env
    return out


def test_every_variable_the_code_reads_is_set_on_every_function(tf):
    needed = env_vars_read_by_code() - set(LOCAL_ONLY) - set(NOT_DEPLOYED) - set(PLATFORM)
    env = function_environment(tf)
    for name in entry_points():
        missing = {v for v in needed - set(SCOPED_SECRETS) if v not in env[name]}
        assert not missing, f"{name} lacks {sorted(missing)}"
    for var, users in SCOPED_SECRETS.items():
        assert var in needed
        assert {n for n, e in env.items() if var in e} == users, f"{var} must reach exactly {users}"


def test_local_only_variables_are_not_set_and_secrets_are_not_plain(tf):
    env = function_environment(tf)
    for name, e in env.items():
        assert not (set(LOCAL_ONLY) | set(NOT_DEPLOYED) | set(PLATFORM)) & set(e), f"{name} sets a local-only variable"
        for var in SECRET_VARIABLES & set(e):
            assert e[var] == "secret", f"{name}: {var} must come from Secret Manager"
    # Terraform creates the secrets but never a version: no secret value in state.
    assert set(tf.locals["secrets"]) == {"gemini-api-key", "smtp-password", "device-key-secret"}
    assert tf.of_type("google_secret_manager_secret_version") == {}
    used = {s for f in tf.locals["functions"].values() for s in f["secrets"].values()}
    assert used == set(tf.locals["secrets"])
    access = tf.resource("google_secret_manager_secret_iam_member", "function_secret")
    assert access["for_each"] == "${local.function_secrets}"
    assert access["role"] == "roles/secretmanager.secretAccessor"


# --- IAM ---------------------------------------------------------------------------------------------------


def test_every_role_binding_is_commented_with_why():
    for path in sorted(deploy_tools.TERRAFORM_DIR.glob("*.tf")):
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            if re.match(r'resource "google_\w+_iam_member"', line):
                assert i > 0 and lines[i - 1].lstrip().startswith("#"), f"{path.name}:{i + 1}: say why"


def test_least_privilege_roles(tf):
    project_roles = {(b["role"], b["member"]) for b in tf.of_type("google_project_iam_member").values()}
    assert project_roles == {("roles/datastore.user", "${google_service_account.fn[each.key].member}"),
                             ("roles/logging.logWriter", "${google_service_account.builder.member}"),
                             ("roles/aiplatform.user", '${google_service_account.fn["analyze"].member}')}
    vertex = tf.resource("google_project_iam_member", "analyze_vertex")
    assert refs(vertex["count"]) == '${var.gemini_backend=="vertex"?1:0}'

    bucket = {n: b for n, b in tf.of_type("google_storage_bucket_iam_member").items()
              if b["bucket"] == "${google_storage_bucket.clips.name}"}
    # objectCreator, not objectUser: the signer of the devices' PUT URLs cannot replace stored evidence.
    assert bucket["edge_api_creator"]["role"] == "roles/storage.objectCreator"
    assert bucket["edge_api_creator"]["member"] == '${google_service_account.fn["edge_api"].member}'
    assert bucket["clip_reader"]["role"] == "roles/storage.objectViewer"
    assert refs(bucket["clip_reader"]["for_each"]) == \
        '${toset(["video_link","tenant_api","console","analyze","alert","ingest","edge_api"])}'
    assert bucket["retention_deleter"]["role"] == "roles/storage.objectUser"
    assert bucket["retention_deleter"]["member"] == '${google_service_account.fn["retention"].member}'
    # Legal hold: tenant_api sets temporary holds through a custom role of get/list/update only.
    holder = tf.resource("google_project_iam_custom_role", "object_holder")
    assert sorted(holder["permissions"]) == ["storage.objects.get", "storage.objects.list", "storage.objects.update"]
    assert bucket["tenant_api_object_holder"]["role"] == "${google_project_iam_custom_role.object_holder.name}"
    assert bucket["tenant_api_object_holder"]["member"] == '${google_service_account.fn["tenant_api"].member}'
    assert set(bucket) == {"edge_api_creator", "clip_reader", "retention_deleter", "tenant_api_object_holder"}

    publishers = tf.resource("google_pubsub_topic_iam_member", "function_publisher")
    assert {(v["fn"], v["topic"]) for v in publishers["for_each"].values()} == {
        ("ingest", "events-ingested"), ("ingest", "events-analyzed"), ("retention", "events-ingested"),
        ("analyze", "events-analyzed")}
    edge = tf.resource("google_pubsub_topic_iam_member", "edge_publisher")
    assert edge["topic"] == '${google_pubsub_topic.pipeline["edge-events"].id}'
    assert edge["role"] == "roles/pubsub.publisher"


def test_evidence_exports_are_signed_by_a_kms_key_only_tenant_api_may_use(tf):
    key = tf.resource("google_kms_crypto_key", "evidence")
    assert key["purpose"] == "ASYMMETRIC_SIGN"
    assert key["version_template"][0]["algorithm"] == "EC_SIGN_P256_SHA256"
    assert key["lifecycle"][0]["prevent_destroy"] is True
    assert tf.locals["common_env"]["VIGINT_EXPORT_KMS_KEY"] == "${local.export_key_version}"
    assert tf.locals["export_key_version"] == "${google_kms_crypto_key.evidence.id}/cryptoKeyVersions/1"
    bindings = tf.of_type("google_kms_crypto_key_iam_member")
    assert {(b["role"], b["member"], b["crypto_key_id"]) for b in bindings.values()} == {
        ("roles/cloudkms.signer", '${google_service_account.fn["tenant_api"].member}',
         "${google_kms_crypto_key.evidence.id}"),
        ("roles/cloudkms.publicKeyViewer", '${google_service_account.fn["tenant_api"].member}',
         "${google_kms_crypto_key.evidence.id}")}
    assert not tf.of_type("google_kms_key_ring_iam_member") and not tf.of_type("google_project_iam_binding")


def test_token_creator_on_the_publish_only_account_is_edge_api_alone(tf):
    sa_bindings = tf.of_type("google_service_account_iam_member")
    on_publisher = [b for b in sa_bindings.values()
                    if b["service_account_id"] == "${google_service_account.edge_publisher.name}"]
    assert len(on_publisher) == 1
    assert on_publisher[0]["role"] == "roles/iam.serviceAccountTokenCreator"
    assert on_publisher[0]["member"] == '${google_service_account.fn["edge_api"].member}'
    self_signer = sa_bindings["self_signer"]
    assert refs(self_signer["for_each"]) == '${toset(["edge_api","video_link","tenant_api","console"])}'
    assert self_signer["service_account_id"] == "${google_service_account.fn[each.key].name}"
    assert self_signer["member"] == "${google_service_account.fn[each.key].member}"
    fn = tf.resource("google_cloudfunctions2_function", "fn")["service_config"][0]
    assert fn["service_account_email"] == "${google_service_account.fn[each.key].email}"
    assert tf.locals["common_env"]["VIGINT_PUBLISHER_SERVICE_ACCOUNT"] == (
        "${google_service_account.edge_publisher.email}")


# --- storage, Firestore, APIs, variables, outputs --------------------------------------------------------------


def test_clips_bucket_is_private_unversioned_with_retention(tf):
    b = tf.resource("google_storage_bucket", "clips")
    assert b["uniform_bucket_level_access"] is True
    assert b["public_access_prevention"] == "enforced"
    assert b["versioning"][0]["enabled"] is False
    deletes = [r for r in b["lifecycle_rule"] if r["action"][0]["type"] == "Delete"]
    assert [r["condition"][0]["age"] for r in deletes] == ["${var.retention_days}"]
    assert tf.locals["common_env"]["VIGINT_BUCKET"] == "${google_storage_bucket.clips.name}"
    # The application's retention default is the same number as the bucket's backstop.
    assert tf.locals["common_env"]["VIGINT_RETENTION_DAYS"] == "${tostring(var.retention_days)}"


def test_firestore_native_with_indexes_and_ttl(tf):
    db = tf.resource("google_firestore_database", "default")
    assert db["type"] == "FIRESTORE_NATIVE" and db["name"] == "(default)"
    index = tf.resource("google_firestore_index", "events")
    assert index["for_each"] == "${local.event_indexes}" and index["collection"] == "events"
    first, second = index["fields"]
    assert first["field_path"] == "${each.value.field}"
    assert (second["field_path"], second["order"]) == ("start_time", "DESCENDING")
    indexed = {i["field"]: i["array"] for i in tf.locals["event_indexes"].values()}
    assert indexed["camera_id"] is False and indexed["severity"] is False  # equality + start_time desc
    assert indexed["labels"] is True and indexed["zones"] is True          # array-contains + start_time desc
    ttl = tf.resource("google_firestore_field", "ttl")
    assert refs(ttl["for_each"]) == '${toset(["events","links"])}' and ttl["field"] == "expire_at"
    assert ttl["ttl_config"] == [{}]


def test_console_is_public_on_its_own_origin_with_its_collections_indexed_and_expiring(tf):
    """The console (issue 11): public (browsers; it authenticates by session), VIGINT_CONSOLE_BASE_URL on every
    function, the root of an origin of its own (its pages use absolute paths and a Path=/ cookie), the SMTP
    password for sign-in e-mails, TTLs on its short-lived collections, the users.email collection-group index of
    sign-in, and the sessions index of revoking a user's sessions."""
    console = tf.locals["functions"]["console"]
    assert console["public"] is True and console["topic"] is None
    assert console["secrets"] == {"VIGINT_DEVICE_KEY_SECRET": "device-key-secret",
                                  "VIGINT_SMTP_PASSWORD": "smtp-password"}
    assert tf.locals["common_env"]["VIGINT_CONSOLE_BASE_URL"] == "${local.console_base_url}"
    base = refs(tf.locals["console_base_url"])
    assert base == ('${var.console_base_url!=""?trimsuffix(var.console_base_url,"/"):'
                    '"https://console-${data.google_project.this.number}.${var.region}.run.app"}')
    assert console["name"] == "console"  # the service name in that deterministic URL
    assert "${var.console_base_url" in tf.variables["console_base_url"]["validation"][0]["condition"]
    assert tf.outputs["console_url"]["value"] == "${local.console_base_url}"
    ttl = tf.resource("google_firestore_field", "ttl_console")
    assert refs(ttl["for_each"]) == (
        '${toset(["console_sessions","console_signin_links","console_signin_limits","console_oidc_states"])}')
    assert ttl["field"] == "expire_at" and ttl["ttl_config"] == [{}]
    email = tf.resource("google_firestore_field", "users_email")
    assert (email["collection"], email["field"]) == ("users", "email")
    scopes = {(i["order"], i["query_scope"]) for i in email["index_config"][0]["indexes"]}
    assert scopes == {("ASCENDING", "COLLECTION"), ("ASCENDING", "COLLECTION_GROUP")}
    sessions = tf.resource("google_firestore_index", "console_sessions_by_user")
    assert sessions["collection"] == "console_sessions" and sessions["query_scope"] == "COLLECTION"
    assert [(f["field_path"], f["order"]) for f in sessions["fields"]] == [("tenant_id", "ASCENDING"),
                                                                         ("user_id", "ASCENDING")]


def test_required_apis_are_enabled(tf):
    apis = set(re.findall(r'"([a-z]+\.googleapis\.com)"', tf.locals["apis"]))
    assert {f"{a}.googleapis.com" for a in ("cloudfunctions", "run", "eventarc", "pubsub", "firestore", "storage",
                                            "secretmanager", "iamcredentials", "cloudbuild", "artifactregistry",
                                            "cloudscheduler")} <= apis


def test_every_variable_is_typed_and_described(tf):
    assert {"project_id", "region", "clips_bucket_name", "retention_days", "mail_from", "smtp_host",
            "gemini_model"} <= set(tf.variables)
    for name, v in tf.variables.items():
        assert v.get("type") and len(v.get("description", "")) >= 15, f"variable {name}: type and description"


def test_outputs(tf):
    assert {"edge_api_url", "video_link_url", "console_url", "clips_bucket", "topics", "publisher_service_account"} <= set(
        tf.outputs)
    assert tf.outputs["edge_api_url"]["value"] == '${google_cloudfunctions2_function.fn["edge_api"].url}'
    assert tf.outputs["video_link_url"]["value"] == '${google_cloudfunctions2_function.fn["video_link"].url}'


def test_backend_is_a_partially_configured_gcs_bucket(parsed_tf):
    terraform = deploy_tools.plain(parsed_tf["versions.tf"]["terraform"][0])
    assert terraform["backend"] == [{"gcs": {}}]
    assert terraform["required_version"] == ">= 1.5"


# --- cloudbuild.yaml -------------------------------------------------------------------------------------------


def test_cloudbuild_tests_packages_and_applies_the_saved_plan():
    import yaml

    build = yaml.safe_load((REPO / "cloudbuild.yaml").read_text())
    steps = {s["id"]: s for s in build["steps"]}
    script = lambda s: " ".join(map(str, s.get("args", [])))
    assert "make test" in script(steps["test"]) and "make deb" in script(steps["deb"])
    assert "ruff check" in script(steps["lint-python"])
    init = script(steps["terraform-init"])
    assert "-backend-config=bucket=${_TF_STATE_BUCKET}" in init
    assert "-out=tfplan" in script(steps["terraform-plan"])
    assert script(steps["terraform-apply"]).split()[-1] == "tfplan"
    order = list(steps)
    assert order.index("test") < order.index("terraform-plan") < order.index("terraform-apply")
    assert "dist/*.deb" in build["artifacts"]["objects"]["paths"]
    used = set(re.findall(r"\$\{(_[A-Z_]+)\}", (REPO / "cloudbuild.yaml").read_text()))
    assert used == set(build["substitutions"]), "every substitution documented with a default, and used"
    header = (REPO / "cloudbuild.yaml").read_text().split("steps:")[0]
    for sub in build["substitutions"]:
        assert sub in header, f"{sub} is not documented in the header"
