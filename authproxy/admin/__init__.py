"""The admin API on its own listener: edge, guard, authentication, handlers.

It reads the proxy application's state through ``web.appkeys``.

May import: ``web`` and everything below it; never ``server`` or ``cli``.
"""
