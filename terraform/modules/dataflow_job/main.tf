# The vitals pipeline as a streaming Dataflow flex template job. The
# template's launcher passes each parameter below as --NAME=VALUE.
#
# NOTE: Beam rejects `--streaming=true` ("ignored explicit argument"), so
# streaming cannot be a parameter here. The flex template's entry point
# must add the bare --streaming flag itself; without it the Pub/Sub source
# fails at launch.

locals {
  pipeline_parameters = merge(
    {
      source            = var.pipeline_source
      kafka_bootstrap   = var.kafka_bootstrap
      alerts_topic      = var.alerts_topic
      dead_letter_topic = var.dead_letter_topic
    },
    var.model_registry == "" ? {} : { model_registry = var.model_registry },
    var.extra_parameters,
  )
}

resource "google_dataflow_flex_template_job" "vitals" {
  provider = google-beta

  project                 = var.project_id
  region                  = var.region
  name                    = var.job_name
  container_spec_gcs_path = var.container_spec_gcs_path
  parameters              = local.pipeline_parameters
  service_account_email   = var.service_account_email
  temp_location           = var.temp_location
  machine_type            = var.machine_type
  max_workers             = var.max_workers
  ip_configuration        = var.ip_configuration
  subnetwork              = var.subnetwork == "" ? null : var.subnetwork
  on_delete               = var.on_delete
  labels                  = var.labels

  # Streaming Engine keeps state and shuffle off the workers, so the
  # per-patient state survives worker replacement and autoscaling.
  enable_streaming_engine = true
}
