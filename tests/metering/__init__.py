"""Tests of authproxy.metering: metering, audit and metrics, one file per module."""
