"""Tests of authproxy.proxy: forwarding, one file per module."""
