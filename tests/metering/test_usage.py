"""metering.usage: the incremental usage parser, any format, any chunking."""

from __future__ import annotations

import itertools
import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from authproxy.metering.usage import (
    MAX_BUFFER,
    Usage,
    UsageParser,
    estimate_prompt_tokens,
    requested_output_tokens,
)
from tests.support.fake_ollama import wire

TOKENS = ["Hi", " there", "!"]


LONG_CONTEXT = list(range(100000, 120000))


def ndjson_generate() -> bytes:
    lines = [wire.generate_chunk("llama3.2", t) for t in TOKENS]
    final = wire.generate_final(
        "llama3.2", prompt_eval_count=26, eval_count=4, context=LONG_CONTEXT
    )
    return b"".join(lines) + final + b"\n"


def ndjson_chat_with_new_field() -> bytes:
    lines = [
        wire.chat_chunk("qwen3", "", thinking="hmm"),
        wire.chat_chunk("qwen3", "ok"),
    ]
    final = json.loads(wire.chat_final("qwen3", prompt_eval_count=7, eval_count=9))
    final["prompt_eval_cached_count"] = 5  # a field added after our reference commit
    final["brand_new"] = {"nested": [1, 2]}
    return b"".join(lines) + wire.go_json(final) + b"\n"


RECORDED: dict[str, tuple[str, bytes, tuple[int | None, int | None, bool]]] = {
    "native-generate": ("application/x-ndjson", ndjson_generate(), (26, 4, True)),
    "native-new-fields": (
        "application/x-ndjson",
        ndjson_chat_with_new_field(),
        (7, 9, True),
    ),
    "openai-usage": (
        "text/event-stream",
        b"".join(
            wire.openai_chat_events(
                "m", TOKENS, include_usage=True, prompt_tokens=11, completion_tokens=5
            )
        ),
        (11, 5, True),
    ),
    "openai-no-usage": (
        "text/event-stream",
        b"".join(
            wire.openai_chat_events(
                "m", TOKENS, include_usage=False, prompt_tokens=11, completion_tokens=5
            )
        ),
        (None, None, False),
    ),
    "completions-usage": (
        "text/event-stream",
        b"".join(
            wire.openai_completion_events(
                "m", TOKENS, include_usage=True, prompt_tokens=12, completion_tokens=6
            )
        ),
        (12, 6, True),
    ),
    "anthropic": (
        "text/event-stream",
        b"".join(
            wire.anthropic_events(
                "m", TOKENS, estimate=999, input_tokens=13, output_tokens=7
            )
        ),
        (13, 7, True),
    ),
    "responses": (
        "text/event-stream",
        b"".join(wire.responses_events("m", TOKENS, 14, 8)),
        (14, 8, True),
    ),
    "json-chat": (
        "application/json; charset=utf-8",
        wire.chat_final("m", content="x", prompt_eval_count=3, eval_count=2),
        (3, 2, True),
    ),
    "json-embed": (
        "application/json; charset=utf-8",
        wire.embed_body("m", 2, 10),
        (10, 0, True),
    ),
    "json-legacy-embedding": (
        "application/json; charset=utf-8",
        wire.legacy_embedding_body(),
        (None, None, False),
    ),
    "json-openai": (
        "application/json",
        wire.openai_chat_body("m", "x", 15, 4),
        (15, 4, True),
    ),
    "json-openai-embeddings": (
        "application/json",
        wire.openai_embeddings_body("m", 1, 16),
        (16, 0, True),
    ),
    "json-anthropic": (
        "application/json",
        wire.anthropic_body("m", "x", 17, 3),
        (17, 3, True),
    ),
    "json-responses": (
        "application/json",
        wire.responses_body("m", "x", 18, 2),
        (18, 2, True),
    ),
}


def parse(content_type: str, chunks: list[bytes]) -> Usage:
    parser = UsageParser(content_type)
    for chunk in chunks:
        parser.feed(chunk)
    return parser.finish()


class TestSources:
    def test_every_recorded_body(self) -> None:
        """Each recorded format yields its exact counts (or none, when absent)."""
        for name, (ctype, body, expected) in RECORDED.items():
            usage = parse(ctype, [body])
            assert (
                usage.prompt_tokens,
                usage.completion_tokens,
                usage.exact,
            ) == expected, name

    def test_native_final_chunk_details(self) -> None:
        """The done:true object gives durations, model and the terminator."""
        usage = parse("application/x-ndjson", [ndjson_generate()])
        assert usage.total_duration == wire.TOTAL_DURATION
        assert usage.load_duration == wire.LOAD_DURATION
        assert usage.prompt_eval_duration == wire.PROMPT_EVAL_DURATION
        assert usage.eval_duration == wire.EVAL_DURATION
        assert usage.model == "llama3.2"
        assert usage.chunks == 3
        assert usage.terminated is True
        assert usage.streamed is True

    def test_error_line_marks_failure(self) -> None:
        """An {"error":...} line marks the stream failed; there are no counts."""
        body = wire.generate_chunk("m", "a") + b'{"error":"runner died"}\n'
        usage = parse("application/x-ndjson", [body])
        assert usage.failed is True
        assert usage.exact is False
        assert usage.chunks == 1

    def test_anthropic_start_estimate_is_ignored(self) -> None:
        """A stream cut after message_start has no counts (its estimate is not used)."""
        events = wire.anthropic_events(
            "m", TOKENS, estimate=999, input_tokens=1, output_tokens=1
        )
        usage = parse("text/event-stream", events[:4])
        assert (usage.prompt_tokens, usage.exact, usage.chunks) == (None, False, 2)
        assert usage.terminated is False

    def test_openai_chunks_counted_for_estimates(self) -> None:
        """Content chunks are counted; the finish chunk and [DONE] are not."""
        usage = parse("text/event-stream", [RECORDED["openai-no-usage"][1]])
        assert usage.chunks == 3
        assert usage.terminated is True

    def test_missing_counts_are_zero(self) -> None:
        """Go's omitempty drops zero counts; a done:true without them means 0."""
        body = b'{"model":"m","response":"","done":true,"done_reason":"load"}'
        usage = parse("application/json; charset=utf-8", [body])
        assert (usage.prompt_tokens, usage.completion_tokens, usage.exact) == (
            0,
            0,
            True,
        )

    def test_other_content_types_are_ignored(self) -> None:
        """Plain text and unknown types carry no usage."""
        usage = parse("text/plain; charset=utf-8", [b"Ollama is running"])
        assert (usage.exact, usage.streamed, usage.chunks) == (False, False, 0)

    @pytest.mark.parametrize(
        ("ctype", "last"),
        [
            ("application/json", b'{"done":true,"eval_count":3}'),
            ("application/x-ndjson", b'\n{"done":true,"eval_count":3}\n'),
        ],
    )
    def test_past_the_buffer_bound_parsing_stops(self, ctype: str, last: bytes) -> None:
        """A body or line past MAX_BUFFER is given up, not grown; later bytes too."""
        half = b" " * (MAX_BUFFER // 2 + 1)  # whitespace JSON would skip
        assert parse(ctype, [last]).exact is True
        assert parse(ctype, [half, last]).exact is True
        assert parse(ctype, [half, half, last]).exact is False

    def test_garbage_is_harmless(self) -> None:
        """Broken JSON and odd bytes never raise."""
        for ctype in ("application/x-ndjson", "text/event-stream", "application/json"):
            usage = parse(
                ctype, [b'{"done":true,', b"\xff\xfe\n\n", b"data: {]\n\n", b"[1,2]\n"]
            )
            assert usage.exact is False

    def test_pull_progress_is_not_metered(self) -> None:
        """Pull progress lines are neither chunks nor counts."""
        usage = parse("application/x-ndjson", wire.pull_lines("ab" * 32, 100))
        assert (usage.chunks, usage.exact, usage.failed) == (0, False, False)


@st.composite
def splits(draw: st.DrawFn, body: bytes) -> list[bytes]:
    cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=40)))
    edges = [0, *cuts, len(body)]
    return [body[a:b] for a, b in itertools.pairwise(edges)]


@settings(max_examples=60, deadline=None)
@given(data=st.data(), name=st.sampled_from(sorted(RECORDED)))
def test_any_split_gives_the_same_usage(data: st.DataObject, name: str) -> None:
    """However a recorded stream is cut into chunks, the usage is the same."""
    ctype, body, _ = RECORDED[name]
    whole = parse(ctype, [body])
    assert parse(ctype, data.draw(splits(body))) == whole


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.binary(max_size=200), max_size=20),
    st.sampled_from(["application/x-ndjson", "text/event-stream", "application/json"]),
)
def test_random_bytes_never_raise(chunks: list[bytes], ctype: str) -> None:
    """Arbitrary bytes in any format never raise."""
    parse(ctype, chunks)


_KEYS = st.sampled_from(
    ["prompt", "content", "text", "images", "image_url", "source", "model", "role", "x"]
)
_JSON_BODIES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(_KEYS, inner, max_size=4)
    ),
    max_leaves=12,
)


def _rule(value: Any, in_text: bool) -> int:
    """The estimate's rule, as first written: text chars in text fields."""
    if isinstance(value, str):
        return len(value) if in_text else 0
    if isinstance(value, list):
        return sum(_rule(v, in_text) for v in value)
    if isinstance(value, dict):
        return sum(
            _rule(v, k in _TEXT_KEY_NAMES or (in_text and k != "images"))
            for k, v in value.items()
            if k not in {"images", "image_url", "source", "model"}
        )
    return 0


_TEXT_KEY_NAMES = {
    "prompt",
    "system",
    "content",
    "text",
    "input",
    "instructions",
    "suffix",
}


class TestEstimate:
    def test_text_fields_only(self) -> None:
        """Prompt text counts (chars / 4, rounded up); images and model names do not."""
        body = {
            "model": "a-very-long-model-name",
            "messages": [
                {
                    "role": "user",
                    "content": "12345678",
                    "images": ["QUFBQUFBQUFBQUFB" * 100],
                },
                {"role": "assistant", "content": [{"type": "text", "text": "abcd"}]},
            ],
            "system": "xyz",
        }
        assert (
            estimate_prompt_tokens(body) == 5
        )  # 8 + 4 + 4 ("text" type) + 3 = 19 -> 5

    def test_empty(self) -> None:
        """No text, no tokens."""
        assert estimate_prompt_tokens({"model": "m"}) == 0
        assert estimate_prompt_tokens(None) == 0

    @settings(max_examples=300)
    @given(data=_JSON_BODIES)
    def test_counts_the_text_the_rule_names(self, data: Any) -> None:
        """Any JSON: text under a text key, or below one (images aside), counts."""
        assert estimate_prompt_tokens(data) == math.ceil(_rule(data, False) / 4)


class TestRequestedOutput:
    @pytest.mark.parametrize(
        ("body", "expected"),
        [
            ({"model": "m", "options": {"num_predict": 128}}, 128),
            ({"model": "m", "options": {"num_predict": -1}}, None),
            ({"model": "m", "max_tokens": 64}, 64),
            ({"model": "m", "max_completion_tokens": 32, "max_tokens": 64}, 32),
            ({"model": "m", "max_output_tokens": 16}, 16),
            ({"model": "m", "max_tokens": True}, None),
            ({"model": "m"}, None),
            ([1, 2], None),
        ],
        ids=[
            "num_predict",
            "unbounded",
            "max_tokens",
            "smallest",
            "responses",
            "bool",
            "none",
            "not-object",
        ],
    )
    def test_output_caps(self, body, expected) -> None:
        """Each dialect's output cap is found; no positive cap means None."""
        assert requested_output_tokens(body) == expected
