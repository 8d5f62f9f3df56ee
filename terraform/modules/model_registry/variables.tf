variable "project_id" {
  type        = string
  description = "Google Cloud project that owns the bucket."
}

variable "bucket_name" {
  type        = string
  description = "Globally unique name of the bucket that holds the model registry."
}

variable "location" {
  type        = string
  description = "Bucket location, a region such as \"europe-west4\" or a multi-region. Use the Dataflow job's region to avoid cross-region reads."
}

variable "storage_class" {
  type        = string
  description = "Storage class of new objects."
  default     = "STANDARD"

  validation {
    condition     = contains(["STANDARD", "NEARLINE", "COLDLINE", "ARCHIVE"], var.storage_class)
    error_message = "storage_class must be one of STANDARD, NEARLINE, COLDLINE, ARCHIVE."
  }
}

variable "noncurrent_version_retention_days" {
  type        = number
  description = "Days an overwritten object version is kept before deletion, so a replaced CURRENT pointer can be restored. In days."
  default     = 90

  validation {
    condition     = var.noncurrent_version_retention_days >= 1
    error_message = "noncurrent_version_retention_days must be at least 1."
  }
}

variable "reader_service_accounts" {
  type        = list(string)
  description = "Emails of service accounts that read models, such as the Dataflow workers. Granted roles/storage.objectViewer."
  default     = []
}

variable "labels" {
  type        = map(string)
  description = "Labels set on the bucket."
  default     = {}
}
