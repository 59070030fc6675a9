"""Tests of authproxy.auth: authentication, one file per module."""
