"""The proxy application: its factory, health endpoints and application keys."""
