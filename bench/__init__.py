"""authproxy benchmark (issue 7): direct vs nginx vs authproxy on loopback."""
