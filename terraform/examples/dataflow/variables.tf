variable "project_id" {
  type        = string
  description = "Google Cloud project for every resource of the example."
}

variable "region" {
  type        = string
  description = "Region of the Dataflow job and the registry bucket, such as \"europe-west4\"."
}

variable "environment" {
  type        = string
  description = "Deployment stage; it prefixes resource names and labels every resource."

  validation {
    condition     = contains(["dev", "staging", "prod"], var.environment)
    error_message = "environment must be dev, staging or prod."
  }
}

variable "container_spec_gcs_path" {
  type        = string
  description = "gs:// path of the vitalwatch flex template spec file."
}

variable "worker_service_account" {
  type        = string
  description = "Email of the service account that the Dataflow workers run as."
}

variable "temp_location" {
  type        = string
  description = "gs:// folder for Dataflow's temporary files."
}

variable "kafka_bootstrap" {
  type        = string
  description = "Kafka brokers, host:port[,host:port], that receive alerts and dead letters."
}
