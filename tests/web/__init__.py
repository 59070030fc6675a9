"""Tests of authproxy.web: the proxy application, one file per module."""
