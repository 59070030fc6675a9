"""Tests of authproxy.admin: the admin API, one file per module."""
