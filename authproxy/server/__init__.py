"""Serving: the guarded HTTP server, TLS, logging set-up and `serve`."""
