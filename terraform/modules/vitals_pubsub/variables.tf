variable "project_id" {
  type        = string
  description = "Google Cloud project that owns the topic and subscription."
}

variable "topic_name" {
  type        = string
  description = "Name of the Pub/Sub topic that devices and gateways publish readings to."
  default     = "vitals"
}

variable "subscription_name" {
  type        = string
  description = "Name of the subscription that the Dataflow job reads; the pipeline's --source is pubsub:projects/PROJECT/subscriptions/NAME."
  default     = "vitals-dataflow"
}

variable "message_retention_duration" {
  type        = string
  description = "How long the subscription keeps unacknowledged messages, as a duration in seconds such as \"604800s\". Pub/Sub allows 600s to 604800s (7 days)."
  default     = "604800s"

  validation {
    condition     = can(regex("^[0-9]+s$", var.message_retention_duration))
    error_message = "message_retention_duration must be whole seconds with an s suffix, for example \"604800s\"."
  }
}

variable "ack_deadline_seconds" {
  type        = number
  description = "Seconds Pub/Sub waits for an acknowledgement before redelivering. Dataflow extends deadlines itself; this is the initial value."
  default     = 60

  validation {
    condition     = var.ack_deadline_seconds >= 10 && var.ack_deadline_seconds <= 600
    error_message = "ack_deadline_seconds must be between 10 and 600."
  }
}

variable "subscriber_service_account" {
  type        = string
  description = "Email of the Dataflow worker service account, granted roles/pubsub.subscriber on the subscription and roles/pubsub.viewer on the topic."
}

variable "labels" {
  type        = map(string)
  description = "Labels set on the topic and subscription."
  default     = {}
}
