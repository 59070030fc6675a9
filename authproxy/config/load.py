"""Load the configuration: YAML file, then ``AUTHPROXY_*`` variables, then flags."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import yaml

from authproxy.config.model import Config
from authproxy.config.schema import build, is_text, leaves, set_dotted, walk
from authproxy.errors import ConfigError

ENV_PREFIX: Final = "AUTHPROXY_"
CONFIG_ENV: Final = "AUTHPROXY_CONFIG"

# File settings: a relative path written in a config file is read from that
# file's directory; from a flag or variable, from the working directory.
PATH_KEYS: Final = (
    "keys.file",
    "limits.state_file",
    "tls.cert",
    "tls.key",
    "tls.client_ca",
    "audit.file",
    "audit.admin_file",
    "jwt.key_file",
)


def config_keys() -> list[str]:
    """Return every dotted config key, in declaration order."""
    return [key for key, _ in walk(Config)]


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """Read ``AUTHPROXY_<SECTION>_<KEY>`` variables into dotted overrides.

    Text options take the value as given; others parse it as YAML, so
    ``10``, ``true`` and ``[a, b]`` work.

    Raises:
        ConfigError: a variable's value is not valid YAML.
    """
    result: dict[str, Any] = {}
    for key, tp, _ in leaves(Config):
        name = ENV_PREFIX + key.upper().replace(".", "_")
        if name not in environ:
            continue
        if is_text(tp):
            # Text as given: "" stays empty, "no" or "0123" stay strings.
            result[key] = environ[name]
            continue
        try:
            result[key] = yaml.safe_load(environ[name])
        except yaml.YAMLError:
            raise ConfigError(
                f"{key}: environment variable {name} is not valid YAML"
            ) from None
    return result


def load_config(
    path: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Load the YAML file, then environment variables, then flag overrides.

    A relative file path written in the file (``keys.file``, ``tls.cert``, any
    of ``PATH_KEYS``) is read from the file's directory, so the same file works
    from any working directory; one from a variable or flag, and a default,
    from the working directory.

    Args:
        path: the YAML file; ``None`` means embedded defaults.
        overrides: dotted keys from command-line flags, highest priority.
        environ: the environment to read ``AUTHPROXY_*`` variables from.

    Raises:
        ConfigError: the file cannot be read or any value is invalid.

    Returns:
        The validated configuration.
    """
    data: dict[str, Any] = {}
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as err:
            raise ConfigError(
                f"cannot read config file {path}: {err.strerror}"
            ) from None
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark else ""
            raise ConfigError(f"config file {path} is not valid YAML{where}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config file {path}: expected a mapping at the top")
        data = loaded or {}
        _anchor_paths(data, Path(path).absolute().parent)
    merged = {**env_overrides(environ or {}), **(overrides or {})}
    for key, value in merged.items():
        set_dotted(data, key, value)
    return build(Config, data)


def _anchor_paths(data: dict[str, Any], base: Path) -> None:
    """Make the relative file paths of a config file's mapping start at ``base``.

    ``base`` is made absolute but not resolved: a Kubernetes ConfigMap is a
    symbolic link into a directory that changes on every update.
    """
    for key in PATH_KEYS:
        *parents, leaf = key.split(".")
        node: Any = data
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            continue
        value = node.get(leaf)
        # "-" is standard output (audit.file); other types fail validation.
        if isinstance(value, str) and value not in {"", "-"}:
            node[leaf] = str(base / value)


def _plain(items: list[tuple[str, Any]]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in items}


def as_dict(config: Config) -> dict[str, Any]:
    """Return the effective configuration as plain data, secrets masked."""
    data = dataclasses.asdict(config, dict_factory=_plain)
    for key, secret in walk(Config):
        if secret:
            node = data
            *parents, leaf = key.split(".")
            for part in parents:
                node = node[part]
            if node[leaf] is not None:
                node[leaf] = "***"
    return data
