"""The admin console: server-rendered pages under ``/admin/ui/`` on the admin listener.

``app.setup_console`` mounts it as a sub-application of the admin API;
``session`` and ``csrf`` keep its sign-in state, ``signin`` checks it on
every request, ``edge`` answers its errors as HTML, ``render`` fills the
jinja2 templates, and one module per page family holds the handlers.

May import: ``admin``, ``web`` and everything below them; never ``server`` or
``cli``.
"""
