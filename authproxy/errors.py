"""The exception hierarchy; HTTP mapping happens only in middlewares and handlers."""

from __future__ import annotations


class AuthProxyError(Exception):
    """Base class of every authproxy error; never raised directly."""


class ConfigError(AuthProxyError, ValueError):
    """A configuration value is missing, of the wrong type or out of range."""


class KeyStoreError(AuthProxyError):
    """The key store cannot be read, parsed or written."""


class KeyStoreUnavailableError(KeyStoreError):
    """The shared key store (Redis) cannot be reached or refused the command."""


class KeyNotFoundError(KeyStoreError):
    """No key has the given id or name."""


class AuthenticationError(AuthProxyError):
    """Presented credentials are missing, malformed, unknown or wrong."""


class UpstreamError(AuthProxyError):
    """The upstream Ollama server failed or could not be reached.

    The edge answers ``{"error": message}`` with ``status`` (502 or 504) and,
    when given, notes ``outcome`` (``upstream_error``, ``upstream_timeout``) in
    the record. ``reason`` says why for the operator's log (``connect
    refused``, ``read timeout``); the client never sees it.
    """

    def __init__(
        self,
        status: int,
        message: str,
        outcome: str | None = None,
        reason: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.outcome = outcome
        self.message = message
        self.reason = reason


class ListenError(AuthProxyError):
    """A listener cannot bind its address; the message names it and its setting."""


class VerifyBusyError(AuthProxyError):
    """Too many credential verifications are already running or queued."""


class Denied(AuthProxyError):
    """The proxy refuses a request; the edge answers ``{"error": message}``.

    ``reason`` goes into the audit record and the metrics, never the message
    alone: both are safe to show the client and never quote the request.
    """

    def __init__(
        self,
        status: int,
        reason: str,
        message: str,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.headers = headers
