"""Per-key limits: requests per minute, concurrency and token quotas.

``quotas`` holds the counters; ``admission`` is the pipeline's admit,
reserve and settle; ``state`` keeps the counters across restarts.

May import: ``metering``, ``auth``, ``policy``, ``keys``, ``config``,
``errors``, ``files``, ``times``.
"""
