"""Authentication: credentials, principals, verification, JWTs, brute-force limits.

``admission`` is the pipeline step: headers in, a ``Principal`` out, or a
``Denied`` (401, 429, 503). ``verify`` runs argon2 off the loop in
``argon2pool``; ``jwt`` and ``minting`` read and make short-lived tokens;
``bruteforce`` counts failures, ``fleet`` shares them through Redis.

May import: ``keys``, ``policy``, ``state``, ``config``, ``errors``, ``times``.
"""
