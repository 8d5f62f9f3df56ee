"""Offline checks of terraform/: formatting, syntax and module layout.

`terraform validate` needs the providers, which only the Terraform
registry serves, so provider schemas (resource arguments) are not checked.
"""

import shutil
import subprocess
from pathlib import Path

import hcl2
import pytest
from lark.exceptions import LarkError

from tests.deploy.conftest import REPO_ROOT

TERRAFORM_DIR = REPO_ROOT / "terraform"
_MODULE_FILES = ("main.tf", "variables.tf", "outputs.tf", "versions.tf")
_FMT_TIMEOUT_SEC = 60


def _module_dirs() -> list[Path]:
    parents = (TERRAFORM_DIR / "modules", TERRAFORM_DIR / "examples")
    return sorted(
        d for parent in parents for d in parent.iterdir() if d.is_dir()
    )


def _variables(module: Path) -> dict[str, dict]:
    with (module / "variables.tf").open() as handle:
        blocks = hcl2.load(handle).get("variable", [])
    return {
        name.strip('"'): body
        for block in blocks
        for name, body in block.items()
    }


def test_terraform_fmt_clean():
    terraform = shutil.which("terraform")
    if terraform is None:
        pytest.skip("terraform not on PATH; python-hcl2 still parses the files")
    result = subprocess.run(
        [terraform, "fmt", "-check", "-recursive", "-diff", str(TERRAFORM_DIR)],
        capture_output=True,
        text=True,
        timeout=_FMT_TIMEOUT_SEC,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_broken_file_rejected(tmp_path):
    path = tmp_path / "broken.tf"
    path.write_text('variable "name" {\n  type = string\n')
    with path.open() as handle, pytest.raises(LarkError):
        hcl2.load(handle)


def test_every_file_parses():
    paths = sorted(TERRAFORM_DIR.rglob("*.tf"))
    assert paths
    for path in paths:
        with path.open() as handle:
            try:
                hcl2.load(handle)
            except LarkError as error:
                pytest.fail(f"{path.relative_to(REPO_ROOT)}: {error}")


def test_modules_have_standard_files():
    modules = _module_dirs()
    assert len(modules) >= 4
    for module in modules:
        for name in (*_MODULE_FILES, "README.md"):
            assert (module / name).is_file(), f"{module.name} lacks {name}"


def test_variables_typed_and_described():
    for module in _module_dirs():
        for name, body in _variables(module).items():
            assert "type" in body, f"{module.name}: {name} has no type"
            description = body.get("description", "").strip('"')
            assert description, f"{module.name}: {name} has no description"


def test_fixed_sets_have_validation():
    fixed_sets = {
        "dataflow_job": ("on_delete", "ip_configuration"),
        "model_registry": ("storage_class",),
        "dataflow": ("environment",),
    }
    modules = {module.name: module for module in _module_dirs()}
    for module_name, names in fixed_sets.items():
        variables = _variables(modules[module_name])
        for name in names:
            assert "validation" in variables[name], f"{module_name}: {name}"
