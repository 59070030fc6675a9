"""Tests of authproxy.limits: per-key limits, one file per module."""
