"""Schema lookups for the offline manifest tests.

Custom resources are checked against the `openAPIV3Schema` of their CRD,
fetched by scripts/fetch_crds.sh. Core objects and the `metadata` of
custom resources are checked against the Kubernetes JSON schemas that the
kubernetes-validate package ships.
"""

import copy
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml
from kubernetes_validate.utils import schema_contents
from referencing import Registry, Resource

# Kubernetes release whose schemas check core objects. kubernetes-validate
# uses its newest schema that is not newer. NOTE: 1.30 is an assumed
# minimum for the production cluster, not a measured one.
KUBERNETES_VERSION = "1.30.0"
_OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"


def load_crd_schemas(crd_dir: Path) -> dict[tuple[str, str], dict]:
    """Map (apiVersion, kind) to the served openAPIV3Schema of every CRD."""
    schemas = {}
    for path in sorted(crd_dir.glob("*/*.y*ml")):
        crd = yaml.safe_load(path.read_text())
        group = crd["spec"]["group"]
        kind = crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            if version.get("served"):
                schema = version["schema"]["openAPIV3Schema"]
                schemas[(f"{group}/{version['name']}", kind)] = schema
    return schemas


def close_unknown_fields(schema: dict) -> dict:
    """Return a copy that rejects fields the schema does not declare.

    The API server prunes unknown fields of a structural schema, and
    `kubectl apply` rejects them (server-side field validation Strict, the
    default since Kubernetes 1.27). JSON Schema accepts them unless an
    object says `additionalProperties: false`, which this adds wherever the
    CRD declares properties and does not set
    `x-kubernetes-preserve-unknown-fields`.
    """
    closed = copy.deepcopy(schema)
    # Every object has these root fields, whether the CRD lists them or not
    # (fabric8's generator lists only spec and status).
    root = closed.setdefault("properties", {})
    root.setdefault("apiVersion", {"type": "string"})
    root.setdefault("kind", {"type": "string"})
    root.setdefault("metadata", {"type": "object"})
    _close(closed)
    return closed


def _close(node: dict) -> None:
    keeps_unknown = node.get("x-kubernetes-preserve-unknown-fields", False)
    if "properties" in node and not keeps_unknown:
        node.setdefault("additionalProperties", False)
    for child in node.get("properties", {}).values():
        _close(child)
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            _close(node[key])
    for key in ("allOf", "anyOf", "oneOf"):
        for child in node.get(key, []):
            _close(child)


def validate_custom_resource(document: dict, crd_schemas: dict) -> None:
    """Validate a custom resource against its CRD and its metadata.

    Raises:
        KeyError: no fetched CRD serves the document's apiVersion and kind.
        jsonschema.ValidationError: the document does not match.
    """
    schema = crd_schemas[(document["apiVersion"], document["kind"])]
    jsonschema.Draft7Validator(close_unknown_fields(schema)).validate(document)
    validate_object_meta(document["metadata"])


def validate_object_meta(metadata: dict) -> None:
    """Validate `metadata` against Kubernetes' strict ObjectMeta schema.

    Raises:
        jsonschema.ValidationError: the metadata does not match.
    """
    folder = f"kubernetes-json-schema/v{KUBERNETES_VERSION}-local-strict"
    definitions = schema_contents(f"{folder}/_definitions.json", "")
    registry = Resource.from_contents(definitions) @ Registry()
    schema = {"$ref": f"{definitions['$id']}#/$defs/{_OBJECT_META}"}
    validator = jsonschema.Draft202012Validator(schema, registry=registry)
    validator.validate(metadata)


def validate_core_object(document: dict) -> None:
    """Validate a core Kubernetes object, rejecting unknown fields.

    Raises:
        kubernetes_validate.SchemaNotFoundError: not a core kind.
        kubernetes_validate.ValidationError: the document does not match.
    """
    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
