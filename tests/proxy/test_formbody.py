"""proxy.formbody: multipart fields read strictly, as Go's FormValue would."""

from __future__ import annotations

import pytest

from authproxy.proxy.formbody import boundary_of, form_field
from authproxy.proxy.jsonbody import BodyFormatError

CTYPE = "multipart/form-data; boundary=B"


def form(*parts: bytes, boundary: bytes = b"B") -> bytes:
    body = b"".join(b"--" + boundary + b"\r\n" + p + b"\r\n" for p in parts)
    return body + b"--" + boundary + b"--\r\n"


def part(name: str, value: bytes, params: str = "", headers: bytes = b"") -> bytes:
    disposition = f'Content-Disposition: form-data; name="{name}"{params}\r\n'
    return disposition.encode() + headers + b"\r\n" + value


def test_reads_the_field() -> None:
    """The one part named ``model`` gives its text; other parts are skipped."""
    body = form(
        part("file", b"RIFF", '; filename="a.wav"', b"Content-Type: audio/wav\r\n"),
        part("model", b"llama3.2"),
    )
    assert form_field(body, CTYPE, "model") == "llama3.2"
    assert form_field(body, CTYPE, "language") is None


def test_quoted_boundary_and_unquoted_name() -> None:
    """A quoted boundary and a token-valued name are plain forms too."""
    body = form(b"Content-Disposition: form-data; name=model\r\n\r\nx", boundary=b"a b")
    assert form_field(body, 'multipart/form-data; boundary="a b"', "model") == "x"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (form(part("model", b"a"), part("model", b"b")), "given twice"),
        (form(part("model", b"a", '; filename="m"')), "sent as a file"),
        (
            form(part("model", b"a", headers=b"Content-Transfer-Encoding: 7bit\r\n")),
            "Content-Transfer-Encoding",
        ),
        (
            form(part("model", b"a")).replace(b"--B\r\n", b"--B \r\n", 1),
            "malformed multipart body",
        ),
        (form(part("model", b"a")).replace(b"\r\n", b"\n"), "malformed multipart"),
        (form(part("x", b"a\r\n--B-x")), "malformed multipart body"),
        (form(part("mo\\del", b"a")), "malformed multipart header"),
        (
            form(b"Content-Disposition: form-data; name*=UTF-8''model\r\n\r\na"),
            "malformed multipart header",
        ),
        (
            form(b"Content-Disposition: form-data;\r\n name=model\r\n\r\na"),
            "malformed multipart part",
        ),
        (
            b'--B\r\nContent-Disposition: form-data; name="model"\r\n\r\na\r\n',
            "malformed multipart body",
        ),
        (form(part("model", b"\xff")), "invalid UTF-8"),
    ],
    ids=[
        "duplicate",
        "file",
        "cte",
        "padded-delimiter",
        "bare-lf",
        "boundary-inside",
        "escaped-name",
        "rfc2231",
        "folded-header",
        "unterminated",
        "not-utf8",
    ],
)
def test_ambiguous_forms_are_refused(body, message) -> None:
    """Anything Go's lenient reader could split or decode differently is refused."""
    with pytest.raises(BodyFormatError, match=message):
        form_field(body, CTYPE, "model")


@pytest.mark.parametrize(
    "ctype",
    [
        "application/json",
        "multipart/mixed; boundary=B",
        "multipart/form-data",
        "multipart/form-data; boundary=B; boundary=C",
        "multipart/form-data; boundary*=B",
    ],
)
def test_content_type_must_be_a_plain_form(ctype) -> None:
    """Go's ParseMultipartForm needs multipart/form-data with one boundary."""
    with pytest.raises(BodyFormatError):
        boundary_of(ctype)
