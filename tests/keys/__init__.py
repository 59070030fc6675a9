"""Tests of authproxy.keys: the key store, one file per module."""
