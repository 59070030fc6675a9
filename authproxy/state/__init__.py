"""Shared state on Redis: the connection and the names of the keys in it.

``connection`` opens redis-py clients (asyncio for the server, blocking for the
CLI and executor work) from the ``state`` settings, with the password read from
the environment variable they name.

May import: ``config``, ``errors``, ``times``.
"""
