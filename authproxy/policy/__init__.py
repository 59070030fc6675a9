"""Access policy, pure: route classes, scopes, model names and allow-lists.

``routes`` classifies paths, ``names`` resolves model names as Ollama does,
``rules`` decides (raising ``errors.Denied``) and filters model listings.

May import: ``keys.record`` (scope names), ``errors``; nothing with I/O.
"""
