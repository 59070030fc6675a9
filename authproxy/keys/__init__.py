"""The key store: records, the YAML file, key life-cycle, JWT signing keys, reload.

``record`` is one key (scopes, models, limits, hashes), ``store`` the file and
its table, ``lifecycle`` create/rotate/revoke/update, ``signing`` the JWT
signing keys, ``watch`` puts a changed store in service through callbacks.
With ``state.backend: redis``, ``redisstore`` holds the store in Redis,
``feed`` follows its changes, and ``backend`` picks the one configured.

May import: ``state``, ``config``, ``errors``, ``files``, ``times``.
"""
