"""Tests of authproxy.server: serving, one file per module."""
