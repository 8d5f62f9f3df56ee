variable "project_id" {
  type        = string
  description = "Google Cloud project that runs the job."
}

variable "region" {
  type        = string
  description = "Dataflow region, such as \"europe-west4\"."
}

variable "job_name" {
  type        = string
  description = "Dataflow job name. A running streaming job is updated in place only under the same name."
  default     = "vitalwatch"
}

variable "container_spec_gcs_path" {
  type        = string
  description = "gs:// path of the flex template spec file that `gcloud dataflow flex-template build` wrote for the vitalwatch image."

  validation {
    condition     = startswith(var.container_spec_gcs_path, "gs://")
    error_message = "container_spec_gcs_path must be a gs:// path."
  }
}

variable "service_account_email" {
  type        = string
  description = "Service account the Dataflow workers run as."
}

variable "temp_location" {
  type        = string
  description = "gs:// folder for Dataflow's temporary files."

  validation {
    condition     = startswith(var.temp_location, "gs://")
    error_message = "temp_location must be a gs:// path."
  }
}

variable "pipeline_source" {
  type        = string
  description = "The pipeline's --source, for example the pipeline_source output of the vitals_pubsub module."
}

variable "model_registry" {
  type        = string
  description = "The pipeline's --model_registry, a gs:// registry root; empty to run only the fast-path checks."
  default     = ""
}

variable "kafka_bootstrap" {
  type        = string
  description = "The pipeline's --kafka_bootstrap, host:port[,host:port] of the brokers that receive alerts and dead letters."
}

variable "alerts_topic" {
  type        = string
  description = "The pipeline's --alerts_topic, the Kafka topic for alerts."
  default     = "vitals-alerts"
}

variable "dead_letter_topic" {
  type        = string
  description = "The pipeline's --dead_letter_topic, the Kafka topic for dead letters."
  default     = "vitals-dead-letters"
}

variable "extra_parameters" {
  type        = map(string)
  description = "Further pipeline options passed as template parameters, without the leading dashes."
  default     = {}
}

variable "machine_type" {
  type        = string
  description = "Compute Engine machine type of the workers."
  default     = "n2-standard-4"
}

variable "max_workers" {
  type        = number
  description = "Upper bound of autoscaling, in workers."
  default     = 10

  validation {
    condition     = var.max_workers >= 1
    error_message = "max_workers must be at least 1."
  }
}

variable "on_delete" {
  type        = string
  description = "What `terraform destroy` does to the running job: drain finishes in-flight data, cancel stops at once."
  default     = "drain"

  validation {
    condition     = contains(["drain", "cancel"], var.on_delete)
    error_message = "on_delete must be drain or cancel."
  }
}

variable "ip_configuration" {
  type        = string
  description = "Whether workers get public IP addresses."
  default     = "WORKER_IP_PRIVATE"

  validation {
    condition     = contains(["WORKER_IP_PRIVATE", "WORKER_IP_PUBLIC"], var.ip_configuration)
    error_message = "ip_configuration must be WORKER_IP_PRIVATE or WORKER_IP_PUBLIC."
  }
}

variable "subnetwork" {
  type        = string
  description = "Subnetwork of the workers, as regions/REGION/subnetworks/NAME; empty for the default network."
  default     = ""
}

variable "labels" {
  type        = map(string)
  description = "Labels set on the job."
  default     = {}
}
