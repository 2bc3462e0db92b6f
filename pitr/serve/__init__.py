"""`pitr serve`: the status page, /metrics, /api/sources and /healthz."""
