"""End-to-end suites: the whole proxy (or `authproxy serve`) driven from outside."""
