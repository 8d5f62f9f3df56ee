output "bucket_name" {
  description = "Name of the registry bucket."
  value       = google_storage_bucket.registry.name
}

output "registry_root" {
  description = "Value of the pipeline's --model_registry option."
  value       = "gs://${google_storage_bucket.registry.name}/registry"
}
