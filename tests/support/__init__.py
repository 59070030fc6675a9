"""What the tests share: the fake Ollama, a raw-HTTP client, clocks, bodies, helpers.

Fixtures stay in tests/conftest.py; everything here is plain code they and the
tests import.
"""
