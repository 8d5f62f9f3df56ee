# Example root module: the vitals pipeline on Dataflow, reading Pub/Sub,
# scoring with the model registry and writing alerts to Kafka.

locals {
  labels = {
    app         = "vitalwatch"
    environment = var.environment
  }
}

module "pubsub" {
  source = "../../modules/vitals_pubsub"

  project_id                 = var.project_id
  topic_name                 = "${var.environment}-vitals"
  subscription_name          = "${var.environment}-vitals-dataflow"
  subscriber_service_account = var.worker_service_account
  labels                     = local.labels
}

module "model_registry" {
  source = "../../modules/model_registry"

  project_id              = var.project_id
  bucket_name             = "${var.project_id}-${var.environment}-vitalwatch-models"
  location                = var.region
  reader_service_accounts = [var.worker_service_account]
  labels                  = local.labels
}

module "dataflow_job" {
  source = "../../modules/dataflow_job"

  project_id              = var.project_id
  region                  = var.region
  job_name                = "${var.environment}-vitalwatch"
  container_spec_gcs_path = var.container_spec_gcs_path
  service_account_email   = var.worker_service_account
  temp_location           = var.temp_location
  pipeline_source         = module.pubsub.pipeline_source
  model_registry          = module.model_registry.registry_root
  kafka_bootstrap         = var.kafka_bootstrap
  labels                  = local.labels
}
