"""Check that the deploy/ resources agree with each other and the CLI.

Schema checks cannot see that a port, a name or a path in one resource
must match another; these tests read the rendered production overlay.
"""

import re

from apache_beam.options.pipeline_options import PipelineOptions

from pipelines.options import VitalsOptions
from runners.cli import _help_parser

# Options of Beam's Java FlinkPipelineOptions that Python passes through to
# the runner. The CLI may or may not list them in --help.
_JAVA_ONLY_OPTIONS = {"--checkpointing_interval"}
_ENV_REFERENCE = re.compile(r"\$\((\w+)\)")


def _one(documents, kind, name=None):
    matches = [
        d
        for d in documents
        if d["kind"] == kind and name in (None, d["metadata"]["name"])
    ]
    assert len(matches) == 1, f"expected one {kind} {name or ''}"
    return matches[0]


def _submit_container(documents):
    job = _one(documents, "Job")
    return job["spec"]["template"]["spec"]["containers"][0]


def _args(documents) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for arg in _submit_container(documents)["args"]:
        name, _, value = arg.partition("=")
        values.setdefault(name, []).append(value)
    return values


def _task_manager_pod(documents):
    deployment = _one(documents, "FlinkDeployment")
    return deployment["spec"]["taskManager"]["podTemplate"]["spec"]


def _sidecar(documents):
    containers = _task_manager_pod(documents)["containers"]
    return next(c for c in containers if c["name"] == "beam-worker-pool")


def test_submit_options_known_to_cli(prod_documents):
    args = _submit_container(prod_documents)["args"]
    _, unknown = _help_parser().parse_known_args(args)
    names = {arg.partition("=")[0] for arg in unknown}
    assert names <= _JAVA_ONLY_OPTIONS


def test_submit_options_pass_validation(prod_documents):
    args = _submit_container(prod_documents)["args"]
    vitals = PipelineOptions(args).view_as(VitalsOptions)
    assert vitals.validate_vitals() == []
    assert vitals.source == "kafka:vitals"


def test_worker_pool_matches_environment(prod_documents):
    args = _args(prod_documents)
    sidecar = _sidecar(prod_documents)
    ports = [p["containerPort"] for p in sidecar["ports"]]
    assert args["--environment_type"] == ["EXTERNAL"]
    assert args["--environment_config"] == [f"localhost:{ports[0]}"]
    assert sidecar["args"] == ["--worker_pool"]


def test_workers_and_submitter_share_image(prod_documents):
    sidecar = _sidecar(prod_documents)
    submitter = _submit_container(prod_documents)
    assert sidecar["image"] == submitter["image"]
    assert sidecar["image"].rsplit(":", 1)[1] != "latest"


def test_flink_master_is_rest_service(prod_documents):
    deployment = _one(prod_documents, "FlinkDeployment")
    rest = f"{deployment['metadata']['name']}-rest:8081"
    assert _args(prod_documents)["--flink_master"] == [rest]


def test_topics_exist_for_options(prod_documents):
    args = _args(prod_documents)
    source = args["--source"][0].removeprefix("kafka:")
    for topic in (
        source,
        *args["--alerts_topic"],
        *args["--dead_letter_topic"],
    ):
        _one(prod_documents, "KafkaTopic", topic)


def test_parallelism_fits_source_partitions(prod_documents):
    parallelism = int(_args(prod_documents)["--parallelism"][0])
    topic = _one(prod_documents, "KafkaTopic", "vitals")
    assert parallelism <= topic["spec"]["partitions"]


def test_kafka_user_acls_cover_options(prod_documents):
    args = _args(prod_documents)
    user = _one(prod_documents, "KafkaUser", "vitalwatch")
    granted = {
        (acl["resource"]["type"], acl["resource"]["name"], operation)
        for acl in user["spec"]["authorization"]["acls"]
        for operation in acl["operations"]
    }
    source = args["--source"][0].removeprefix("kafka:")
    assert ("topic", source, "Read") in granted
    assert ("group", args["--kafka_group"][0], "Read") in granted
    for topic in (*args["--alerts_topic"], *args["--dead_letter_topic"]):
        assert ("topic", topic, "Write") in granted


def test_kafka_files_mounted_in_sidecar(prod_documents):
    config = _one(prod_documents, "ConfigMap", "vitalwatch-kafka-client")
    mount = _sidecar(prod_documents)["volumeMounts"][0]
    volume = next(
        v
        for v in _task_manager_pod(prod_documents)["volumes"]
        if v["name"] == mount["name"]
    )
    files = {
        f"{mount['mountPath']}/{item['path']}"
        for source in volume["projected"]["sources"]
        for item in source["secret"]["items"]
    }
    locations = {
        v for k, v in config["data"].items() if k.endswith("_LOCATION")
    }
    assert locations
    assert locations <= files


def test_env_references_defined(prod_documents):
    container = _submit_container(prod_documents)
    config_names = [e["configMapRef"]["name"] for e in container["envFrom"]]
    defined = set()
    for name in config_names:
        defined |= set(_one(prod_documents, "ConfigMap", name)["data"])
    referenced = {
        match
        for arg in container["args"]
        for match in _ENV_REFERENCE.findall(arg)
    }
    assert referenced
    assert referenced <= defined


def test_metrics_port_matches_service(prod_documents):
    deployment = _one(prod_documents, "FlinkDeployment")
    config = deployment["spec"]["flinkConfiguration"]
    service = _one(prod_documents, "Service", "vitalwatch-flink-metrics")
    port = int(config["metrics.reporter.prom.port"])
    assert config["metrics.reporter.prom.factory.class"] == (
        "org.apache.flink.metrics.prometheus.PrometheusReporterFactory"
    )
    assert [p["port"] for p in service["spec"]["ports"]] == [port]
    assert service["spec"]["selector"]["app"] == deployment["metadata"]["name"]


def test_state_on_object_storage(prod_documents):
    deployment = _one(prod_documents, "FlinkDeployment")
    config = deployment["spec"]["flinkConfiguration"]
    for key in (
        "state.checkpoints.dir",
        "state.savepoints.dir",
        "high-availability.storageDir",
    ):
        assert config[key].startswith("gs://vitalwatch-prod-"), key
    main = _task_manager_pod(prod_documents)["containers"][0]
    plugins = {e["name"]: e["value"] for e in main["env"]}
    assert "flink-gs-fs-hadoop" in plugins["ENABLE_BUILT_IN_PLUGINS"]


def test_submit_job_never_retries(prod_documents):
    job = _one(prod_documents, "Job")
    assert job["spec"]["backoffLimit"] == 0
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
