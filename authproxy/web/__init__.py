"""The proxy application: factory, the edge, the pipeline, health, app keys.

``app.create_app`` calls the ``setup_*`` functions in an explained order;
``edge`` is the one place errors become HTTP and the one record is written;
``pipeline`` chains authentication, limits and the handler; ``appkeys``
holds every application key.

May import: everything below it (``proxy``, ``limits``, ``metering``,
``auth``, ``policy``, ``keys``, ``config``, ...); never ``admin``, ``server``
or ``cli``.
"""
