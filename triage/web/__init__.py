"""triage.web: the worklist, study and admin pages, the JSON API, /api/health and /metrics."""
