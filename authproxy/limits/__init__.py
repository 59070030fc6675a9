"""Per-key limits: rate, concurrency and token quotas."""
