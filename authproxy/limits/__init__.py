"""Per-key limits: requests per minute, concurrency and token quotas.

``quotas`` holds the counters; ``admission`` is the pipeline's admit,
reserve and settle; ``state`` keeps the counters across restarts.

With ``state.backend: redis``, ``shared`` counts them in Redis (its Lua in
``scripts``), exact across replicas; ``admission.LocalAdmission`` and
``shared.SharedAdmission`` are the pipeline's two interchangeable gates.

May import: ``metering``, ``auth``, ``policy``, ``keys``, ``state``, ``config``,
``errors``, ``files``, ``times``.
"""
