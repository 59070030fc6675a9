"""Differential tests: what the proxy allows is what an Ollama-faithful upstream runs.

The upstream is tests/support/goupstream/main.go, built here with Debian's golang-go:
it binds bodies with Go's encoding/json as Ollama's handlers do, and answers
with the models it resolved. Every request below is sent with a key limited to
``llama3.2`` and without the ``cloud`` scope, and with a key that has no
allow-list but no ``cloud`` scope either. Each must be refused by the proxy
(a 4xx of its own) or resolve, in Go, to an allowed model that is not a cloud
model. Legitimate spellings must get through.
"""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import zstandard
from aiohttp.test_utils import TestClient

from authproxy.proxy.jsonbody import _NON_ASCII_FOLDS
from tests.support.harness import MakeKey, StartProxy

GO_SOURCE = Path(__file__).resolve().parents[1] / "support" / "goupstream" / "main.go"
ALLOWED = "llama3.2:latest"
MANAGE = ("inference", "embeddings", "models:read", "models:manage")
JSON_ROUTES = [
    "/api/generate",
    "/api/chat",
    "/api/embed",
    "/api/embeddings",
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/responses",
    "/v1/messages",
    "/api/show",
    "/api/pull",
    "/api/push",
    "/api/create",
]


@pytest.fixture(scope="session")
def go_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the Go stand-in once per session (golang-go is installed by .ci/run)."""
    go = shutil.which("go")
    if go is None:
        pytest.fail("golang-go is required for the differential tests (.ci/run)")
    out = tmp_path_factory.mktemp("goupstream")
    binary = out / "goupstream"
    subprocess.run(
        [go, "build", "-o", str(binary), str(GO_SOURCE)],
        check=True,
        env={
            "PATH": "/usr/bin:/bin",
            "HOME": str(out),
            "GOCACHE": str(out / "cache"),
            "GO111MODULE": "off",
            "GOFLAGS": "",
        },
        timeout=300,
    )
    return binary


@pytest.fixture
async def go_upstream(go_binary: Path) -> AsyncIterator[str]:
    """Run the stand-in on a free loopback port; yield its origin."""
    proc = await asyncio.create_subprocess_exec(
        str(go_binary), "127.0.0.1:0", stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 10)
    try:
        yield "http://" + line.decode().split()[1]
    finally:
        proc.kill()
        await proc.wait()


@pytest.fixture
async def keys(make_key: MakeKey) -> dict[str, str]:
    """A key limited to llama3.2, and one with no allow-list; neither has cloud."""
    limited = make_key("limited", models=("llama3.2",), scopes=MANAGE)
    open_ = make_key("open", scopes=MANAGE)
    assert limited.token is not None
    assert open_.token is not None
    return {"limited": limited.token, "open": open_.token}


@pytest.fixture
async def proxy_to_go(
    start_proxy: StartProxy, go_upstream: str, keys: dict[str, str]
) -> TestClient[Any, Any]:
    return await start_proxy({"upstream.url": go_upstream})


async def send(
    client: TestClient[Any, Any],
    token: str,
    path: str,
    body: bytes | None,
    headers: dict[str, str] | None = None,
    method: str = "POST",
) -> tuple[int, Any]:
    """Send one request through the proxy; return its status and JSON reply."""
    resp = await client.request(
        method,
        path,
        data=body,
        headers={"Authorization": f"Bearer {token}", **(headers or {})},
    )
    text = await resp.read()
    try:
        return resp.status, json.loads(text)
    except ValueError:
        return resp.status, text.decode(errors="replace")


def judge(status: int, reply: Any, key: str) -> str:
    """Fail on a forbidden resolution; return "go" or "refused".

    Raises:
        AssertionError: a 5xx, or Go resolved a model the key may not use.
    """
    assert status < 500, (status, reply)
    if isinstance(reply, dict) and reply.get("resolved_by") == "go":
        assert reply["remote"] is False, reply
        for model in reply["models"] or ():
            assert model["cloud"] is False, reply
            if key == "limited":
                assert spelled_out(model["value"]) == ALLOWED, reply
        return "go"
    assert 400 <= status < 500, (status, reply)
    return "refused"


def spelled_out(value: str) -> str:
    """Spell a name with Ollama's defaults, independently of authproxy.modelname."""
    name = value.strip().lower().removesuffix(":local")
    name = name.removeprefix("registry.ollama.ai/").removeprefix("library/")
    return name if ":" in name.rsplit("/", 1)[-1] else name + ":latest"


def case_variants(name: str, rng: random.Random) -> str:
    """Return ``name`` with random letter case and random ``\\u`` escapes."""
    out = []
    for letter in name:
        char = letter.upper() if rng.random() < 0.5 else letter
        if rng.random() < 0.3:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return "".join(out)


BYPASSES: list[tuple[str, bytes]] = [
    ("case", b'{"model":"llama3.2","Model":"qwen3:8b"}'),
    ("upper", b'{"model":"llama3.2","MODEL":"gpt-oss:cloud"}'),
    ("escaped-key", b'{"model":"llama3.2","Mod\\u0065l":"qwen3:8b"}'),
    ("escaped-dup", b'{"model":"llama3.2","mode\\u006c":"qwen3:8b"}'),
    ("null-then-case", b'{"model":null,"Model":"qwen3:8b"}'),
    ("trailing", b'{"model":"qwen3:8b"} garbage'),
    ("second-object", b'{"model":"qwen3:8b"}{"model":"llama3.2"}'),
    ("lone-surrogate", b'{"model":"gpt-oss:cloud","x":"\\ud800"}'),
    ("invalid-utf8", b'{"model":"gpt-oss:cloud","x":"\xff"}'),
    ("deep", b'{"model":"qwen3:8b","x":' + b"[" * 1500 + b"]" * 1500 + b"}"),
    ("deep-200", b'{"model":"qwen3:8b","x":' + b"[" * 200 + b"]" * 200 + b"}"),
    ("bom", b'\xef\xbb\xbf{"model":"qwen3:8b"}'),
    ("cloud-upper", b'{"model":"gpt-oss:120b-CLOUD"}'),
    ("cloud-tab", b'{"model":"gpt-oss:cloud\\t"}'),
    ("cloud-space", b'{"model":" gpt-oss:Cloud "}'),
    ("cloud-explicit", b'{"model":"llama3.2:cloud"}'),
    ("name-field", b'{"name":"gpt-oss:cloud"}'),
    ("not-a-string", b'{"model":["qwen3:8b"]}'),
    ("long-name", b'{"model":"' + b"q" * 5000 + b'"}'),
    ("padded", b'{"model":"' + b" " * 2000 + b'llama3.2"}'),
]


@pytest.mark.parametrize("body", [b for _, b in BYPASSES], ids=[k for k, _ in BYPASSES])
async def test_spellings_never_reach_a_forbidden_model(proxy_to_go, keys, body) -> None:
    """However a body spells its model, Go never resolves a forbidden one.

    Each spelling goes to every JSON model route, with both keys, labelled as
    JSON and as text/plain (Ollama ignores Content-Type).
    """
    for path in JSON_ROUTES:
        for key in ("limited", "open"):
            for ctype in ("application/json", "text/plain"):
                status, reply = await send(
                    proxy_to_go, keys[key], path, body, {"Content-Type": ctype}
                )
                judge(status, reply, key)


MANAGEMENT: list[tuple[str, str, bytes]] = [
    ("create-from-cloud", "/api/create", b'{"model":"mine","from":"gpt-oss:cloud"}'),
    (
        "create-remote",
        "/api/create",
        b'{"model":"mine","from":"llama3.2","remote_host":"https://ollama.com"}',
    ),
    (
        "create-remote-case",
        "/api/create",
        b'{"model":"mine","from":"llama3.2","Remote_Host":"https://ollama.com"}',
    ),
    ("copy-cloud", "/api/copy", b'{"source":"gpt-oss:cloud","destination":"mine"}'),
    (
        "copy-long-s",
        "/api/copy",
        '{"source":"llama3.2","\u017fource":"gpt-oss:cloud","destination":"x"}'.encode(),
    ),
    (
        "copy-kelvin-free",
        "/api/copy",
        b'{"source":"llama3.2","destination":"gpt-oss:120b-Cloud"}',
    ),
    ("delete-other", "/api/delete", b'{"model":"qwen3:8b"}'),
    ("delete-name", "/api/delete", b'{"name":"qwen3:8b"}'),
    ("pull-name-cloud", "/api/pull", b'{"name":"kimi:cloud"}'),
    ("push-other", "/api/push", b'{"model":"qwen3:8b"}'),
    ("show-name", "/api/show", b'{"name":"qwen3:8b"}'),
]


@pytest.mark.parametrize(
    ("path", "body"),
    [(p, b) for _, p, b in MANAGEMENT],
    ids=[label for label, _, _ in MANAGEMENT],
)
async def test_model_management_bodies_are_read_too(
    proxy_to_go, keys, path, body
) -> None:
    """pull/push/create/copy/delete/show fields obey the cloud rule and the list."""
    method = "DELETE" if path == "/api/delete" else "POST"
    for key in ("limited", "open"):
        status, reply = await send(proxy_to_go, keys[key], path, body, method=method)
        judge(status, reply, key)


LEGIT: list[tuple[str, bytes]] = [
    ("/api/chat", b'{"model":"llama3.2","messages":[]}'),
    ("/api/chat", b'{"Model":"llama3.2","messages":[]}'),
    ("/api/generate", b'{"model":"LLAMA3.2:latest","prompt":"hi"}'),
    ("/api/embed", b'{"model":" llama3.2 ","input":"x"}'),
    ("/v1/chat/completions", b'{"model":"llama3.2","messages":[]}  \n'),
    ("/v1/messages", b'{"model":"llama3.2:local","max_tokens":5,"messages":[]}'),
    ("/api/show", b'{"name":"llama3.2"}'),
    ("/api/pull", b'{"model":"registry.ollama.ai/library/llama3.2"}'),
    ("/api/copy", b'{"source":"llama3.2","destination":"llama3.2:latest"}'),
]


@pytest.mark.parametrize(("path", "body"), LEGIT, ids=[p for p, _ in LEGIT])
async def test_legitimate_spellings_pass(proxy_to_go, keys, path, body) -> None:
    """Spellings Ollama resolves to the allowed model are forwarded unchanged."""
    status, reply = await send(
        proxy_to_go, keys["limited"], path, body, {"Content-Type": "text/plain"}
    )
    assert judge(status, reply, "limited") == "go", (status, reply)
    assert reply["models"], reply


async def test_zstd_is_checked_on_what_go_reads(proxy_to_go, keys) -> None:
    """A zstd body on /v1 is judged decoded, and Go receives exactly that."""
    zstd = zstandard.ZstdCompressor().compress
    headers = {"Content-Encoding": "zstd"}
    status, reply = await send(
        proxy_to_go,
        keys["limited"],
        "/v1/chat/completions",
        zstd(b'{"model":"llama3.2","messages":[]}'),
        headers,
    )
    assert judge(status, reply, "limited") == "go"
    status, reply = await send(
        proxy_to_go,
        keys["open"],
        "/v1/responses",
        zstd(b'{"model":"gpt-oss:120b-cloud","input":"x"}'),
        headers,
    )
    assert judge(status, reply, "open") == "refused"
    status, reply = await send(
        proxy_to_go,
        keys["open"],
        "/api/chat",
        b'{"model":"gpt-oss:cloud"}',
        {"Content-Encoding": "gzip"},
    )
    assert (status, judge(status, reply, "open")) == (415, "refused")


def multipart(*parts: bytes, boundary: bytes = b"BOUNDARY") -> tuple[bytes, str]:
    """Join raw parts into a multipart/form-data body."""
    body = b"".join(b"--" + boundary + b"\r\n" + p + b"\r\n" for p in parts)
    ctype = f"multipart/form-data; boundary={boundary.decode()}"
    return body + b"--" + boundary + b"--\r\n", ctype


def field(name: str, value: bytes, extra: bytes = b"") -> bytes:
    return (
        f'Content-Disposition: form-data; name="{name}"\r\n'.encode()
        + extra
        + b"\r\n"
        + value
    )


AUDIO = (
    b'Content-Disposition: form-data; name="file"; filename="a.wav"\r\n'
    b"Content-Type: audio/wav\r\n\r\nRIFF"
)
INJECTED = (
    b'Content-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\nRIFF'
    b'\r\n--BOUNDARY \r\nContent-Disposition: form-data; name="model"\r\n\r\n'
    b"qwen3:8b"
)
AS_FILE = (
    b'Content-Disposition: form-data; name="model"; filename="m.txt"\r\n\r\nqwen3:8b'
)
QUOTED = field(
    "model", b"qwen3=3A8b", b"Content-Transfer-Encoding: quoted-printable\r\n"
)
FORMS: list[tuple[str, str, tuple[bytes, ...]]] = [
    ("plain-forbidden", "", (field("model", b"qwen3:8b"), AUDIO)),
    ("cloud", "", (field("model", b"gpt-oss:cloud"), AUDIO)),
    ("query-wins", "?model=qwen3:8b", (field("model", b"llama3.2"), AUDIO)),
    ("duplicate", "", (field("model", b"llama3.2"), field("model", b"qwen3:8b"))),
    ("quoted-printable", "", (QUOTED, AUDIO)),
    ("padded-boundary", "", (INJECTED, field("model", b"llama3.2"))),
    ("as-file", "", (AS_FILE, field("model", b"llama3.2"), AUDIO)),
    ("escaped-name", "", (field("mod\\el", b"qwen3:8b"), AUDIO)),
]


@pytest.mark.parametrize(
    ("query", "parts"),
    [(q, p) for _, q, p in FORMS],
    ids=[label for label, _, _ in FORMS],
)
async def test_transcription_forms(proxy_to_go, keys, query, parts) -> None:
    """The multipart model field is read as Go's FormValue reads it, or refused."""
    body, ctype = multipart(*parts)
    for key in ("limited", "open"):
        status, reply = await send(
            proxy_to_go,
            keys[key],
            "/v1/audio/transcriptions" + query,
            body,
            {"Content-Type": ctype},
        )
        judge(status, reply, key)


async def test_transcription_with_the_allowed_model_passes(proxy_to_go, keys) -> None:
    """A plain form naming the allowed model reaches Go, which reads that model."""
    body, ctype = multipart(field("model", b"llama3.2"), AUDIO)
    status, reply = await send(
        proxy_to_go,
        keys["limited"],
        "/v1/audio/transcriptions",
        body,
        {"Content-Type": ctype},
    )
    assert judge(status, reply, "limited") == "go"
    assert reply["models"] == [
        {"field": "form.model", "value": "llama3.2", "cloud": False}
    ]


@pytest.mark.parametrize(
    "path",
    [
        "/v1/models/qwen3:8b",
        "/v1/models/gpt-oss:cloud%20",
        "/v1/models/%20gpt-oss:120b-CLOUD",
        "/v1/models/llama3.2",
    ],
)
async def test_path_models(proxy_to_go, keys, path) -> None:
    """/v1/models/{model} is judged on the trimmed, decoded path model."""
    for key in ("limited", "open"):
        status, reply = await send(proxy_to_go, keys[key], path, None, method="GET")
        judge(status, reply, key)


async def test_random_spellings(proxy_to_go, keys) -> None:
    """Hundreds of generated spellings: never a forbidden or cloud resolution."""
    rng = random.Random(11)  # noqa: S311 - a fixed seed: a failure reproduces
    values = [
        "llama3.2",
        "qwen3:8b",
        "gpt-oss:120b-cloud",
        "gpt-oss:cloud",
        "LLAMA3.2",
        "kimi:CLOUD ",
    ]
    outcomes = {"go": 0, "refused": 0}
    for _ in range(300):
        members = [
            f'"{case_variants("model", rng)}":"{rng.choice(values)}"'
            for _ in range(rng.randint(1, 3))
        ]
        body = ("{" + ",".join(members) + "}").encode()
        if rng.random() < 0.2:
            body += rng.choice([b" x", b'{"model":"qwen3:8b"}', b"\n\n"])
        path = rng.choice(JSON_ROUTES)
        key = rng.choice(["limited", "open"])
        status, reply = await send(proxy_to_go, keys[key], path, body)
        outcomes[judge(status, reply, key)] += 1
    # Both kinds occur, so the property was really exercised both ways.
    assert outcomes["go"] > 30
    assert outcomes["refused"] > 30


def test_fold_table_matches_go(go_binary: Path) -> None:
    """The non-ASCII characters Go folds onto ASCII letters are the ones we map."""
    out = subprocess.run(
        [str(go_binary), "folds"], capture_output=True, text=True, check=True
    ).stdout
    table = {
        chr(int(code, 16)): letter
        for code, letter in (line.split() for line in out.splitlines())
    }
    assert table == _NON_ASCII_FOLDS
    # str.casefold, used for collisions, folds them the same way.
    assert all(char.casefold() == letter for char, letter in table.items())
