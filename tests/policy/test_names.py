"""policy.names: model names as Ollama resolves them, and allow-list globs."""

from __future__ import annotations

import pytest

from authproxy.policy.names import (
    MAX_NAME_LENGTH,
    ModelNameError,
    is_cloud_model,
    model_allowed,
    name_allowed,
    normalize_pattern,
    parse_model,
)


class TestParse:
    @pytest.mark.parametrize(
        ("name", "pull_name", "cloud"),
        [
            ("llama3.2", "llama3.2:latest", False),
            ("llama3.2:1b", "llama3.2:1b", False),
            ("LLAMA3.2:Latest", "llama3.2:latest", False),
            ("  qwen3:8b \t", "qwen3:8b", False),
            ("library/qwen3", "qwen3:latest", False),
            ("registry.ollama.ai/library/qwen3:8b", "qwen3:8b", False),
            ("hf.co/org/model", "hf.co/org/model:latest", False),
            ("https://reg.io/ns/m:t", "reg.io/ns/m:t", False),
            ("llama3.2:local", "llama3.2:latest", False),
            ("x/y-cloud", "x/y-cloud:latest", False),
            ("gpt-oss:120b-cloud", "gpt-oss:120b-cloud", True),
            ("gpt-oss:120b-CLOUD", "gpt-oss:120b-cloud", True),
            ("gpt-oss:Cloud ", "gpt-oss:cloud", True),
            ("gpt-oss:cloud\t", "gpt-oss:cloud", True),
            ("gpt-oss:120b:cloud", "gpt-oss:120b-cloud", True),
            ("x:y-cloud", "x:y-cloud", True),
            ("kimi:cloud", "kimi:cloud", True),
        ],
        ids=lambda v: repr(v) if isinstance(v, str) else str(v),
    )
    def test_resolves_like_ollama(self, name, pull_name, cloud) -> None:
        """Trimmed, source suffix read case-insensitively, defaults filled in."""
        ref = parse_model(name)
        assert ref.name == name.strip()
        assert ref.pull_name == pull_name
        assert ref.cloud is cloud
        assert is_cloud_model(name) is cloud

    @pytest.mark.parametrize(
        ("name", "message"),
        [
            ("", "empty"),
            ("   ", "empty"),
            ("x:cloud:local", "use either :local or :cloud, not both"),
            ("host:5000/m", "invalid model name"),
            ("a/b/c/d", "invalid model name"),
            ("m@sha256:abc", "invalid model name"),
            ("m:", "invalid model name"),
            ("/m", "invalid model name"),
            ("ns/m:a/b", "invalid model name"),
            ("qwen3 :8b", "invalid model name"),
            ("-m", "invalid model name"),
            ("m" * 81, "invalid model name"),
            ("m" * (MAX_NAME_LENGTH + 1), f"longer than {MAX_NAME_LENGTH} characters"),
        ],
        ids=lambda v: repr(v)[:30],
    )
    def test_names_ollama_refuses(self, name, message) -> None:
        """A name Ollama would refuse is refused, without quoting it."""
        with pytest.raises(ModelNameError) as caught:
            parse_model(name)
        assert str(caught.value) == message
        assert is_cloud_model(name) is False

    def test_padding_does_not_make_a_long_name_valid(self) -> None:
        """Whitespace counts toward the length bound, before trimming."""
        with pytest.raises(ModelNameError):
            parse_model(" " * MAX_NAME_LENGTH + "llama3.2")


class TestAllowList:
    @pytest.mark.parametrize(
        ("name", "patterns", "allowed"),
        [
            ("llama3.2", ["llama3.2"], True),
            ("llama3.2:latest", ["llama3.2"], True),
            ("llama3.2", ["llama3.2:latest"], True),
            ("LLAMA3.2", ["llama3.2"], True),
            (" llama3.2 ", ["llama3.2"], True),
            ("library/llama3.2", ["llama3.2"], True),
            ("registry.ollama.ai/library/llama3.2:latest", ["llama3.2"], True),
            ("llama3.2:1b", ["llama3.2"], False),
            ("llama3.2:1b", ["llama3.2:*"], True),
            ("llama3.2", ["llama3.2*"], True),
            ("llama3.1", ["llama3.2:*"], False),
            ("qwen3:8b", ["llama*", "qwen3:*"], True),
            ("mistral", ["llama*"], False),
            ("nomic-embed-text", [], True),
            ("llama3.2:x/evil/qwen3:8b", ["llama3.2:*"], False),
            ("hf.co/org/model:q4", ["hf.co/org/*"], True),
            ("hf.co/org/model:q4", ["hf.co/*"], False),
            ("llama3.2:local", ["llama3.2"], True),
            ("gpt-oss:120b-cloud", ["gpt-oss:120b"], False),
            ("gpt-oss:120b:cloud", ["gpt-oss:120b-cloud"], True),
            ("gpt-oss:120b-CLOUD", ["gpt-oss:*"], True),
        ],
        ids=lambda v: repr(v)[:40],
    )
    def test_globs_match_the_pull_name(self, name, patterns, allowed) -> None:
        """Globs compare the name Ollama resolves; `*` never crosses a `/`."""
        assert model_allowed(parse_model(name), [tuple(patterns)]) is allowed

    def test_every_list_must_match(self) -> None:
        """A JWT's model list narrows the key's: both must allow the model."""
        rules = [("llama*",), ("llama3.2:*",)]
        assert model_allowed(parse_model("llama3.2:1b"), rules) is True
        assert model_allowed(parse_model("llama3.1"), rules) is False

    def test_patterns_are_normalised(self) -> None:
        """Plain patterns get defaults; globs lose a spelled-out default prefix."""
        assert normalize_pattern("Llama3.2") == "llama3.2:latest"
        assert normalize_pattern("library/qwen3:*") == "qwen3:*"
        assert normalize_pattern("registry.ollama.ai/library/q*") == "q*"
        assert normalize_pattern("hf.co/org/*") == "hf.co/org/*"

    def test_listed_names_that_do_not_parse_are_never_allowed(self) -> None:
        """An invalid name from a listing is dropped rather than matched as text."""
        assert name_allowed("ok:latest", [("ok",)]) is True
        assert name_allowed("a/b/c/d", [("*",)]) is False
