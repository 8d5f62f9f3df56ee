output "job_id" {
  description = "Dataflow job id."
  value       = google_dataflow_flex_template_job.vitals.job_id
}

output "job_state" {
  description = "Dataflow job state when Terraform last read it."
  value       = google_dataflow_flex_template_job.vitals.state
}
