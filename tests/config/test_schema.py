"""config.schema: durations, sizes and typed fields, each error naming its key."""

from __future__ import annotations

import pytest

from authproxy.config.load import load_config
from authproxy.config.schema import seconds, size
from authproxy.errors import ConfigError


class TestConverters:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [(5, 5.0), (2.5, 2.5), ("1m", 60.0), ("250ms", 0.25)],
    )
    def test_seconds(self, value, expected) -> None:
        """Durations are numbers of seconds or unit strings."""
        assert seconds(value) == expected

    @pytest.mark.parametrize("value", [True, -1, [5], None])
    def test_bad_seconds(self, value) -> None:
        """Booleans, negatives and non-scalars are not durations."""
        with pytest.raises(ValueError, match="duration"):
            seconds(value)

    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            (0, 0),
            (1024, 1024),
            ("1KiB", 1024),
            ("1 MB", 1_000_000),
            ("2gib", 2 * 1024**3),
        ],
    )
    def test_size(self, value, expected) -> None:
        """Sizes are byte counts or unit strings (KB/KiB/MB/MiB/GB/GiB)."""
        assert size(value) == expected

    @pytest.mark.parametrize("value", [True, -1, "1 TB", "lots", 1.5])
    def test_bad_size(self, value) -> None:
        """Anything else is rejected."""
        with pytest.raises(ValueError, match="byte count"):
            size(value)

    def test_float_and_bool_fields(self) -> None:
        """Plain float, bool and string fields reject the wrong type by name."""
        with pytest.raises(
            ConfigError, match=r"upstream\.host_header: expected a string"
        ):
            load_config(None, {"upstream.host_header": 5})
        config = load_config(None, {"upstream.host_header": "localhost:11434"})
        assert config.upstream.host_header == "localhost:11434"


def test_config_durations_out_of_range() -> None:
    """A config duration past 100 years is a ConfigError naming the key."""
    with pytest.raises(ConfigError, match=r"keys\.cache_ttl: duration '9999999999d'"):
        load_config(None, {"keys.cache_ttl": "9999999999d"})
