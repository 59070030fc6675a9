"""Serving: the guarded HTTP server, TLS, logging set-up and ``serve``.

May import: ``web``, ``admin``, ``console`` and everything below them; never ``cli``.
"""
