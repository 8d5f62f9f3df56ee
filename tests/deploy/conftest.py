"""Fixtures for the offline checks of deploy/: CRDs and manifests.

`crd_schemas` runs scripts/fetch_crds.sh, which needs Maven and Java the
first time and then reads its cache. The rendered overlay needs `kubectl`
for its built-in kustomize; tests that use it skip when it is missing.
"""

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.deploy.schemas import load_crd_schemas

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY_DIR = REPO_ROOT / "deploy"
BASE_DIR = DEPLOY_DIR / "base"
# A first fetch resolves about 31 MB of jars from Maven Central (measured).
_FETCH_TIMEOUT_SEC = 600
_KUSTOMIZE_TIMEOUT_SEC = 60


def base_resource_paths() -> list[Path]:
    """List the files that deploy/base/kustomization.yaml includes."""
    kustomization = yaml.safe_load(
        (BASE_DIR / "kustomization.yaml").read_text()
    )
    return [BASE_DIR / name for name in kustomization["resources"]]


def load_documents(path: Path) -> list[dict]:
    """Load every non-empty YAML document of a manifest file."""
    documents = yaml.safe_load_all(path.read_text())
    return [document for document in documents if document]


@pytest.fixture(scope="session")
def crd_schemas() -> dict:
    """CRD schemas keyed by (apiVersion, kind), fetched once per machine."""
    script = REPO_ROOT / "scripts" / "fetch_crds.sh"
    result = subprocess.run(
        ["bash", str(script)],
        capture_output=True,
        text=True,
        timeout=_FETCH_TIMEOUT_SEC,
    )
    if result.returncode != 0:
        pytest.fail(f"{script} failed:\n{result.stderr}")
    return load_crd_schemas(Path(result.stdout.strip()))


@pytest.fixture(scope="session")
def base_documents() -> list[dict]:
    """Every document of deploy/base, loaded file by file with PyYAML."""
    return [
        document
        for path in base_resource_paths()
        for document in load_documents(path)
    ]


def render_overlay(folder: Path) -> list[dict]:
    """Render a kustomization with `kubectl kustomize` and parse it."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not on PATH; it renders the kustomize overlay")
    result = subprocess.run(
        [kubectl, "kustomize", str(folder)],
        capture_output=True,
        text=True,
        timeout=_KUSTOMIZE_TIMEOUT_SEC,
    )
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


@pytest.fixture(scope="session")
def prod_documents() -> list[dict]:
    """Every document of deploy/overlays/prod as kustomize renders it."""
    return render_overlay(DEPLOY_DIR / "overlays" / "prod")
