"""Serving: the guarded HTTP server, TLS, logging set-up and ``serve``.

May import: ``web``, ``admin`` and everything below them; never ``cli``.
"""
