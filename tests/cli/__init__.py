"""Tests of authproxy.cli: the command line, one file per module."""
