"""Tests of authproxy.policy: access policy, one file per module."""
