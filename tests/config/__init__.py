"""Tests of authproxy.config: configuration, one file per module."""
