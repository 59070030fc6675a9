"""admin.body: bad input is a 400 naming the field, never a 500."""

from __future__ import annotations

from http import HTTPStatus
from pathlib import Path

import pytest

from tests.support.admin import Stack


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "error"),
    [
        ("POST", "/admin/keys", {}, 400, "name: required, a string"),
        (
            "POST",
            "/admin/keys",
            {"name": "x", "scopes": ["root"]},
            400,
            "scopes: unknown scope 'root'",
        ),
        (
            "POST",
            "/admin/keys",
            {"name": "x", "models": [1]},
            400,
            "models: expected a list of strings",
        ),
        (
            "POST",
            "/admin/keys",
            {"name": "x", "expires_at": "2001-01-01T00:00:00Z"},
            400,
            "expires_at: must be in the future",
        ),
        (
            "POST",
            "/admin/keys",
            {"name": "x", "colour": "red"},
            400,
            "colour: unknown field",
        ),
        (
            "POST",
            "/admin/keys",
            {"name": "bad name"},
            400,
            "invalid key name 'bad name'",
        ),
        (
            "POST",
            "/admin/keys",
            {"name": "alice"},
            400,
            "a key named 'alice' already exists",
        ),
        ("POST", "/admin/keys", [1], 400, "body: expected a JSON object"),
        (
            "PATCH",
            "/admin/keys/alice",
            {"hash": "x"},
            400,
            "hash: not a field that can be changed",
        ),
        ("PATCH", "/admin/keys/alice", {}, 400, "body: give at least one of"),
        (
            "PATCH",
            "/admin/keys/alice",
            {"disabled": "yes"},
            400,
            "disabled: expected true or false",
        ),
        (
            "POST",
            "/admin/keys/alice/rotate",
            {"grace": "soon"},
            400,
            "grace: invalid duration 'soon'",
        ),
        (
            "POST",
            "/admin/keys/alice/tokens",
            {"ttl": "48h"},
            400,
            "ttl: must be more than 0 and at most",
        ),
        ("GET", "/admin/usage?by=colour", None, 400, "by: unknown dimension 'colour'"),
        ("GET", "/admin/keys/nobody", None, 404, "key not found"),
        ("POST", "/admin/keys/nobody/revoke", None, 404, "key not found"),
    ],
    ids=lambda v: (
        v if isinstance(v, str) and len(v) < 24 and v.isidentifier() else None
    ),
)
async def test_bad_input_names_the_field(
    stack: Stack, method, path, body, status, error
) -> None:
    """Bad input is a 400 naming the field; an unknown id is a 404."""
    got, data = await stack.api(method, path, body)
    assert got == status
    assert error in data["error"]


async def test_invalid_json_body(stack: Stack) -> None:
    """A body that is not JSON is a 400."""
    resp = await stack.admin.post(
        "/admin/keys",
        data=b"{nope",
        headers={
            "Authorization": f"Bearer {stack.admin_token}",
            "Content-Type": "application/json",
        },
    )
    assert resp.status == HTTPStatus.BAD_REQUEST
    assert await resp.json() == {"error": "body: not valid JSON"}


ROTATE, TOKENS, KEYS, ALICE = (
    "/admin/keys/alice/rotate",
    "/admin/keys/alice/tokens",
    "/admin/keys",
    "/admin/keys/alice",
)


TOO_LONG = "is too long (at most 36500d, 100 years)"


BAD_LIMIT = "expected a positive integer or 0, at most 1000000000000000"


NOT_A_TIME = "expected RFC 3339 (2026-12-31T00:00:00Z) or a duration"


def _limit(name: str, value: str) -> bytes:
    return f'{{"name":"x","limits":{{"{name}":{value}}}}}'.encode()


# (id, method, path, raw JSON body or None, the start of the error message)
OUT_OF_RANGE = [
    ("grace-inf", "POST", ROTATE, b'{"grace":"inf"}', "grace: invalid duration"),
    ("grace-nan", "POST", ROTATE, b'{"grace":"nan"}', "grace: invalid duration"),
    ("grace-1e400s", "POST", ROTATE, b'{"grace":"1e400"}', "grace: invalid duration"),
    ("grace-days", "POST", ROTATE, b'{"grace":"9999999999d"}', "grace: duration"),
    ("grace-digits", "POST", ROTATE, b'{"grace":"' + b"9" * 500 + b'"}', "grace:"),
    ("grace-1e20", "POST", ROTATE, b'{"grace":1e20}', f"grace: duration {TOO_LONG}"),
    ("grace-1e400", "POST", ROTATE, b'{"grace":1e400}', f"grace: duration {TOO_LONG}"),
    ("grace-bigint", "POST", ROTATE, b'{"grace":1' + b"0" * 400 + b"}", "grace:"),
    ("grace-neg", "POST", ROTATE, b'{"grace":-1}', "grace: negative duration"),
    ("grace-negstr", "POST", ROTATE, b'{"grace":"-1"}', "grace: negative duration"),
    ("grace-NaN", "POST", ROTATE, b'{"grace":NaN}', "body: NaN is not valid JSON"),
    ("grace-Inf", "POST", ROTATE, b'{"grace":Infinity}', "body: Infinity is not"),
    ("grace--Inf", "POST", ROTATE, b'{"grace":-Infinity}', "body: -Infinity is not"),
    ("ttl-inf", "POST", TOKENS, b'{"ttl":"inf"}', "ttl: invalid duration 'inf'"),
    ("ttl-1e20", "POST", TOKENS, b'{"ttl":1e20}', f"ttl: duration {TOO_LONG}"),
    ("ttl-1e400", "POST", TOKENS, b'{"ttl":1e400}', f"ttl: duration {TOO_LONG}"),
    ("ttl-days", "POST", TOKENS, b'{"ttl":"9999999999d"}', "ttl: duration '99"),
    ("ttl-neg", "POST", TOKENS, b'{"ttl":-5}', "ttl: negative duration"),
    (
        "expires-days",
        "POST",
        KEYS,
        b'{"name":"x","expires_at":"9999999999d"}',
        f"expires_at: duration '9999999999d' {TOO_LONG}",
    ),
    (
        "expires-inf",
        "POST",
        KEYS,
        b'{"name":"x","expires_at":"inf"}',
        "expires_at: invalid time 'inf'",
    ),
    (
        "expires-1e400d",
        "POST",
        KEYS,
        b'{"name":"x","expires_at":"1e400d"}',
        f"expires_at: invalid time '1e400d': {NOT_A_TIME}",
    ),
    (
        "expires-offset",
        "POST",
        KEYS,
        b'{"name":"x","expires_at":"9999-12-31T23:59:59-10:00"}',
        "expires_at: time '9999-12-31T23:59:59-10:00' is out of range",
    ),
    (
        "expires-number",
        "POST",
        KEYS,
        b'{"name":"x","expires_at":1e400}',
        "expires_at: expected an RFC 3339 time, a duration or null",
    ),
    (
        "patch-expires",
        "PATCH",
        ALICE,
        b'{"expires_at":"9999999999w"}',
        f"expires_at: duration '9999999999w' {TOO_LONG}",
    ),
    (
        "rpm-huge",
        "POST",
        KEYS,
        _limit("requests_per_minute", "1" + "0" * 30),
        f"limits.requests_per_minute: {BAD_LIMIT}",
    ),
    (
        "concurrent-float",
        "POST",
        KEYS,
        _limit("concurrent", "1.5"),
        f"limits.concurrent: {BAD_LIMIT}",
    ),
    (
        "concurrent-1e400",
        "POST",
        KEYS,
        _limit("concurrent", "1e400"),
        f"limits.concurrent: {BAD_LIMIT}",
    ),
    (
        "day-true",
        "POST",
        KEYS,
        _limit("tokens_per_day", "true"),
        f"limits.tokens_per_day: {BAD_LIMIT}",
    ),
    (
        "day-false",
        "POST",
        KEYS,
        _limit("tokens_per_day", "false"),
        f"limits.tokens_per_day: {BAD_LIMIT}",
    ),
    (
        "month-zero-float",
        "POST",
        KEYS,
        _limit("tokens_per_month", "0.0"),
        f"limits.tokens_per_month: {BAD_LIMIT}",
    ),
    (
        "patch-month-huge",
        "PATCH",
        ALICE,
        b'{"limits":{"tokens_per_month":1' + b"0" * 400 + b"}}",
        f"limits.tokens_per_month: {BAD_LIMIT}",
    ),
    ("since-inf", "GET", "/admin/usage?since=inf", None, "since: invalid time 'inf'"),
    ("until-1e400d", "GET", "/admin/usage?until=1e400d", None, "until: invalid"),
    (
        "since-days",
        "GET",
        "/admin/usage?since=9999999999d",
        None,
        f"since: duration '9999999999d' {TOO_LONG}",
    ),
    (
        "since-offset",
        "GET",
        "/admin/usage?since=0001-01-01T00:00:00%2B01:00",
        None,
        "since: time '0001-01-01T00:00:00+01:00' is out of range",
    ),
    ("until-neg", "GET", "/admin/usage?until=-5", None, "until: negative duration"),
    ("deep", "POST", KEYS, b"[" * 60000, "body: nested too deeply"),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "error"),
    [case[1:] for case in OUT_OF_RANGE],
    ids=[case[0] for case in OUT_OF_RANGE],
)
async def test_out_of_range_numbers_are_a_400(
    stack: Stack, keys_path: Path, log_capture, method, path, body, error
) -> None:
    """Infinite, NaN, huge or negative numbers are a 400 naming the field, no 500."""
    before = keys_path.read_bytes()
    headers = {"Authorization": f"Bearer {stack.admin_token}"}
    if method != "GET":
        headers["Content-Type"] = "application/json"
    resp = await stack.admin.request(method, path, data=body, headers=headers)
    assert resp.status == HTTPStatus.BAD_REQUEST
    data = await resp.json()
    assert data["error"].startswith(error)
    assert len(data["error"]) < 200
    assert keys_path.read_bytes() == before
    assert log_capture.events("request_failed") == []
    assert [line for line in log_capture.lines() if line["level"] == "error"] == []
