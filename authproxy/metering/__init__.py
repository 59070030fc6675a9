"""What a request did: the exchange record, usage, the audit log, reports, metrics.

``exchange`` is the request's record (plain data, no aiohttp), filled in along
the pipeline and turned into the one audit record at the end; ``usage``
reads token counts from responses; ``chain``/``audit``/``trail`` write the
sealed logs; ``report`` sums them; ``metrics`` counts them.

With ``state.backend: redis``, ``fleet`` keeps the fleet's usage counters in
Redis for ``GET /admin/usage``.

May import: ``auth`` (the principal), ``policy``, ``keys``, ``state``, ``config``,
``errors``, ``files``, ``times``.
"""
