"""Forwarding to Ollama: headers, request bodies, the upstream request, the relay.

``handler.forward`` reads top to bottom: resolve the target, require the
scope, read the body (``body``, ``jsonbody``, ``formbody``), require the
models, reserve tokens, send, relay (``relay``, ``listing``).

May import: ``metering``, ``auth``, ``policy``, ``keys``, ``config``,
``errors``, ``responses``, ``times``; never ``limits`` (the handler gets its
reservation as a callback).
"""
