"""The ``state`` section: where keys live (a file, or Redis shared by replicas)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

from yarl import URL

from authproxy.config.schema import option, seconds
from authproxy.errors import ConfigError

BACKENDS: Final = ("file", "redis")
_ENV_NAME_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PREFIX_RE: Final = re.compile(r"[A-Za-z0-9_.:{}-]{1,64}")


def _text_or_none(value: Any) -> str | None:
    if not isinstance(value, str):
        raise ValueError("expected a redis:// or rediss:// URL")
    return value or None


def url_problem(value: str) -> str | None:
    """Tell what is wrong with a Redis URL, never quoting it (it may hold a password).

    Returns:
        The problem, or ``None`` for a ``redis://`` or ``rediss://`` URL with a
        host, an optional database number and no password.
    """
    try:
        url = URL(value)
    except ValueError:
        return "expected a redis:// or rediss:// URL"
    if url.password is not None:
        # It would show in `authproxy config`, in logs and in this message.
        return (
            "the URL holds a password: put it in an environment variable and "
            "name that variable in state.redis_password_env"
        )
    if url.scheme not in {"redis", "rediss"} or not url.host:
        return "expected a URL such as redis://127.0.0.1:6379/0"
    if url.query_string or url.fragment:
        return "expected a URL without query or fragment"
    if url.path not in {"", "/"} and not url.path[1:].isdigit():
        return "expected a database number as the path, e.g. /0"
    return None


def _env_name(value: Any) -> str | None:
    if not isinstance(value, str) or (value and not _ENV_NAME_RE.fullmatch(value)):
        raise ValueError("expected the name of an environment variable")
    return value or None


def _prefix(value: Any) -> str:
    if not isinstance(value, str) or not _PREFIX_RE.fullmatch(value):
        raise ValueError("expected 1-64 letters, digits or _.:{}-")
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class StateConfig:
    """Where shared state lives: ``file`` (one process) or ``redis`` (replicas)."""

    backend: str = option("file", check=(lambda v: v in BACKENDS, " | ".join(BACKENDS)))
    redis_url: str | None = option(None, parse=_text_or_none)
    redis_password_env: str | None = option(None, parse=_env_name)
    prefix: str = option("authproxy:", parse=_prefix)
    stale_after: float = option(2.0, parse=seconds, check=(lambda v: v > 0, "> 0"))
    lease_ttl: float = option(30.0, parse=seconds, check=(lambda v: v >= 1, ">= 1s"))

    def __post_init__(self) -> None:
        # Checked here, not by the option's parser, whose message would quote
        # the value and so a password pasted into it.
        problem = url_problem(self.redis_url) if self.redis_url else None
        if problem is not None:
            raise ConfigError(f"state.redis_url: {problem}")
        if self.backend == "redis" and not self.redis_url:
            raise ConfigError("state.redis_url: required when state.backend is redis")
