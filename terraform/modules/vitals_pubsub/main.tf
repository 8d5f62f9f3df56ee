# Pub/Sub input of the vitals pipeline on Dataflow: one topic for device
# payloads and the subscription the job reads.

resource "google_pubsub_topic" "vitals" {
  project = var.project_id
  name    = var.topic_name
  labels  = var.labels
}

resource "google_pubsub_subscription" "dataflow" {
  project                    = var.project_id
  name                       = var.subscription_name
  topic                      = google_pubsub_topic.vitals.id
  ack_deadline_seconds       = var.ack_deadline_seconds
  message_retention_duration = var.message_retention_duration
  labels                     = var.labels

  # A streaming job may be stopped for longer than the default 31 days of
  # inactivity after which Pub/Sub would delete the subscription.
  expiration_policy {
    ttl = ""
  }

  # No dead_letter_policy: Dataflow acknowledges messages itself, and the
  # pipeline sends invalid payloads to its own dead-letter output.
}

resource "google_pubsub_subscription_iam_member" "subscriber" {
  project      = var.project_id
  subscription = google_pubsub_subscription.dataflow.name
  role         = "roles/pubsub.subscriber"
  member       = "serviceAccount:${var.subscriber_service_account}"
}

# Dataflow reads the topic's metadata to check the subscription.
resource "google_pubsub_topic_iam_member" "viewer" {
  project = var.project_id
  topic   = google_pubsub_topic.vitals.name
  role    = "roles/pubsub.viewer"
  member  = "serviceAccount:${var.subscriber_service_account}"
}
