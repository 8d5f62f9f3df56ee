"""Validate every manifest of deploy/ against official schemas, offline.

Custom resources go against the CRDs from Maven Central, with unknown
fields rejected as `kubectl apply` does. Core objects go against the
Kubernetes schemas of kubernetes-validate. No cluster is involved, so
admission webhooks, operator-side checks and RBAC are not covered.
"""

import copy

import jsonschema
import kubernetes_validate
import pytest

from tests.deploy.schemas import (
    validate_core_object,
    validate_custom_resource,
)

_CUSTOM_GROUPS = ("flink.apache.org/", "kafka.strimzi.io/")


def _is_custom(document: dict) -> bool:
    return document["apiVersion"].startswith(_CUSTOM_GROUPS)


def _label(document: dict) -> str:
    return f"{document['kind']}/{document['metadata']['name']}"


def _validate(document: dict, crd_schemas: dict) -> None:
    if _is_custom(document):
        validate_custom_resource(document, crd_schemas)
    else:
        validate_core_object(document)


def _find(documents: list[dict], kind: str) -> dict:
    matches = [d for d in documents if d["kind"] == kind]
    assert len(matches) == 1, f"expected one {kind}, found {len(matches)}"
    return copy.deepcopy(matches[0])


def test_base_documents_match_schemas(base_documents, crd_schemas):
    for document in base_documents:
        try:
            _validate(document, crd_schemas)
        except (jsonschema.ValidationError, KeyError) as error:
            pytest.fail(f"{_label(document)}: {error}")


def test_prod_documents_match_schemas(prod_documents, crd_schemas):
    for document in prod_documents:
        try:
            _validate(document, crd_schemas)
        except (jsonschema.ValidationError, KeyError) as error:
            pytest.fail(f"{_label(document)}: {error}")


def test_every_kind_has_schema(base_documents, crd_schemas):
    kinds = {(d["apiVersion"], d["kind"]) for d in base_documents}
    assert ("flink.apache.org/v1beta1", "FlinkDeployment") in kinds
    assert ("kafka.strimzi.io/v1beta2", "KafkaTopic") in kinds
    for api_version, kind in kinds:
        if api_version.startswith(_CUSTOM_GROUPS):
            assert (api_version, kind) in crd_schemas


def test_flink_wrong_type_rejected(base_documents, crd_schemas):
    document = _find(base_documents, "FlinkDeployment")
    document["spec"]["taskManager"]["resource"]["cpu"] = "two"
    with pytest.raises(jsonschema.ValidationError, match="'two'"):
        validate_custom_resource(document, crd_schemas)


def test_flink_unknown_version_rejected(base_documents, crd_schemas):
    document = _find(base_documents, "FlinkDeployment")
    document["spec"]["flinkVersion"] = "v1_99"
    with pytest.raises(jsonschema.ValidationError, match="v1_99"):
        validate_custom_resource(document, crd_schemas)


def test_sidecar_unknown_field_rejected(base_documents, crd_schemas):
    document = _find(base_documents, "FlinkDeployment")
    pod = document["spec"]["taskManager"]["podTemplate"]["spec"]
    sidecar = pod["containers"][1]
    sidecar["port"] = sidecar.pop("ports")
    with pytest.raises(jsonschema.ValidationError, match="'port'"):
        validate_custom_resource(document, crd_schemas)


def test_topic_unknown_field_rejected(base_documents, crd_schemas):
    document = _find(
        [d for d in base_documents if d["metadata"]["name"] == "vitals"],
        "KafkaTopic",
    )
    document["spec"]["partition"] = document["spec"].pop("partitions")
    with pytest.raises(jsonschema.ValidationError, match="'partition'"):
        validate_custom_resource(document, crd_schemas)


def test_topic_zero_partitions_rejected(base_documents, crd_schemas):
    document = _find(
        [d for d in base_documents if d["metadata"]["name"] == "vitals"],
        "KafkaTopic",
    )
    document["spec"]["partitions"] = 0
    with pytest.raises(jsonschema.ValidationError, match="minimum"):
        validate_custom_resource(document, crd_schemas)


def test_custom_metadata_wrong_type_rejected(base_documents, crd_schemas):
    document = _find(base_documents, "KafkaUser")
    document["metadata"]["labels"] = ["strimzi.io/cluster"]
    with pytest.raises(jsonschema.ValidationError):
        validate_custom_resource(document, crd_schemas)


def test_job_wrong_type_rejected(base_documents):
    document = _find(base_documents, "Job")
    document["spec"]["backoffLimit"] = "0"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_core_object(document)


def test_service_unknown_field_rejected(base_documents):
    document = _find(base_documents, "Service")
    document["spec"]["selectors"] = document["spec"].pop("selector")
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_core_object(document)
