output "topic_id" {
  description = "Pub/Sub topic that devices publish to."
  value       = module.pubsub.topic_id
}

output "model_registry" {
  description = "Registry root to promote models into with `python -m models`."
  value       = module.model_registry.registry_root
}

output "job_id" {
  description = "Dataflow job id."
  value       = module.dataflow_job.job_id
}
