output "topic_id" {
  description = "Full id of the topic, projects/PROJECT/topics/NAME."
  value       = google_pubsub_topic.vitals.id
}

output "subscription_id" {
  description = "Full id of the subscription, projects/PROJECT/subscriptions/NAME."
  value       = google_pubsub_subscription.dataflow.id
}

output "pipeline_source" {
  description = "Value of the pipeline's --source option for this subscription."
  value       = "pubsub:${google_pubsub_subscription.dataflow.id}"
}
