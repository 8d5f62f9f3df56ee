# Bucket of the versioned model registry (models/registry.py): numbered
# model versions and the CURRENT pointer that the pipeline polls.

resource "google_storage_bucket" "registry" {
  project                     = var.project_id
  name                        = var.bucket_name
  location                    = var.location
  storage_class               = var.storage_class
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  labels                      = var.labels

  # Models are trained on patient data, so a plan that would delete the
  # bucket with its objects must fail.
  force_destroy = false

  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.noncurrent_version_retention_days
    }
    action {
      type = "Delete"
    }
  }
}

resource "google_storage_bucket_iam_member" "reader" {
  for_each = toset(var.reader_service_accounts)

  bucket = google_storage_bucket.registry.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${each.value}"
}
