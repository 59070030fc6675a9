"""console.headers: the Content-Security-Policy the contract fixes, word for word."""

from __future__ import annotations

from authproxy.console.headers import CSP


def test_the_policy_allows_only_this_origin() -> None:
    """No inline script or style, no framing, no plugins, forms stay here."""
    directives = dict(d.strip().split(" ", 1) for d in CSP.split(";"))
    assert directives == {
        "default-src": "'self'",
        "script-src": "'self'",
        "style-src": "'self'",
        "img-src": "'self' data:",
        "form-action": "'self'",
        "frame-ancestors": "'none'",
        "base-uri": "'none'",
        "object-src": "'none'",
    }
    assert "unsafe" not in CSP
