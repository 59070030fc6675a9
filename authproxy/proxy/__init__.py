"""Forwarding: headers, request bodies, the upstream request and the relay."""
