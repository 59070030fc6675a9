"""proxy.jsonbody: one reading of a JSON body or a refusal, as Go would bind it."""

from __future__ import annotations

import pytest

from authproxy.proxy.jsonbody import (
    MAX_DEPTH,
    BodyFormatError,
    folded_get,
    folds_to,
    parse_object,
)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"model":"a"} x', "request body: data after the JSON value"),
        (b'{"model":"a"}{"model":"b"}', "request body: data after the JSON value"),
        (b'{"model":"\\ud800"}', "request body: invalid UTF-8 or a lone surrogate"),
        (b'{"model":"\xff"}', "request body: invalid UTF-8 or a lone surrogate"),
        (b'{"a":"\xed\xa0\x80"}', "request body: invalid UTF-8 or a lone surrogate"),
        (b"\xef\xbb\xbf{}", "request body: a byte order mark is not allowed"),
        (b"[" * 2000 + b"]" * 2000, "request body: nested too deeply"),
        (b"", "request body: empty"),
        (b"x{", "request body: not valid JSON"),
        (b'{"a":NaN}', "request body: not valid JSON"),
        (b"[1,2]", "request body: expected a JSON object"),
        (b"null", "request body: expected a JSON object"),
        (
            b'{"model":"a","Model":"b"}',
            "request body: two keys differ only in case; Ollama would read the "
            "last of them",
        ),
    ],
    ids=[
        "trailing",
        "second-value",
        "lone-surrogate",
        "invalid-utf8",
        "encoded-surrogate",
        "bom",
        "too-deep-for-orjson",
        "empty",
        "garbage",
        "nan",
        "array",
        "null",
        "case-collision",
    ],
)
def test_ambiguous_bodies_are_refused(body, message) -> None:
    """Each body Go could read differently is refused with a message saying why."""
    with pytest.raises(BodyFormatError) as caught:
        parse_object(body)
    assert str(caught.value) == message


def test_depth_bound() -> None:
    """MAX_DEPTH levels parse; one more is refused, well below Go's 10,000."""
    ok = b'{"a":' + b"[" * (MAX_DEPTH - 1) + b"]" * (MAX_DEPTH - 1) + b"}"
    value = parse_object(ok)["a"]
    for _ in range(MAX_DEPTH - 2):
        (value,) = value
    assert value == []
    deeper = b'{"a":' + b"[" * MAX_DEPTH + b"]" * MAX_DEPTH + b"}"
    with pytest.raises(BodyFormatError, match="nested too deeply"):
        parse_object(deeper)


@pytest.mark.parametrize(
    "body",
    [
        b'{"messages":[{"Role":"user","role":"x"}]}',
        b'{"options":{"NUM_CTX":1,"num_ctx":2}}',
        '{"source":"a","\u017fource":"b"}'.encode(),
        '{"\u212aeep":1,"keep":2}'.encode(),
        b'{"model":"a","mod\\u0045l":"b"}',
    ],
    ids=["nested", "options", "long-s", "kelvin", "escaped"],
)
def test_collisions_are_found_at_every_level(body) -> None:
    """Keys that fold together are refused anywhere in the body, escapes decoded."""
    with pytest.raises(BodyFormatError, match="differ only in case"):
        parse_object(body)


def test_exact_duplicates_keep_the_last_as_go_does() -> None:
    """Two identical keys: the last wins, which is also what Go binds."""
    assert parse_object(b'{"model":"a","model":"b"}') == {"model": "b"}


def test_plain_bodies_parse() -> None:
    """Ordinary bodies, trailing white space included, parse unchanged."""
    body = b'{"model":"llama3.2","messages":[{"role":"user","content":"hi"}]} \r\n\t'
    data = parse_object(body)
    assert data["messages"][0]["content"] == "hi"


@pytest.mark.parametrize(
    ("key", "name", "binds"),
    [
        ("model", "model", True),
        ("MODEL", "model", True),
        ("mOdEl", "model", True),
        ("\u212aeep_alive", "keep_alive", True),
        ("\u017fource", "source", True),
        ("models", "model", False),
        ("mode", "model", False),
        ("m\u00f6del", "model", False),
        ("\ufb06ream", "stream", False),
    ],
)
def test_folds_to_follows_go(key, name, binds) -> None:
    """Go binds a key to a field by simple folding: ASCII case, K and long s."""
    assert folds_to(key, name) is binds


def test_folded_get_finds_the_bound_value() -> None:
    """The value Go binds to ``model`` is found however the key is spelled."""
    assert folded_get({"Model": "x"}, "model") == "x"
    assert folded_get({"model": "y"}, "model") == "y"
    assert folded_get({"other": "z"}, "model") is None
