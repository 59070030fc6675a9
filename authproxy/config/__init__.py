"""Configuration: frozen dataclasses of every setting, their checks, and loading.

``schema`` has the option helpers, ``model`` the settings, ``load`` reads the
embedded defaults, a YAML file, ``AUTHPROXY_*`` variables and flags.

May import: ``errors``, ``times``, and PyYAML (``load`` only).
"""
