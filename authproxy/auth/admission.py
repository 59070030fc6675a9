"""Authentication as an admission step: a credential becomes a principal, or Denied.

Every failure gets the same 401 with both challenges; a client the brute-force
limiter blocks gets 429; a full verification queue gets 503. A blocked client
still passes with a credential that needs no argon2 work (cached, or a JWT):
a correct credential proves itself.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Final

import structlog
from multidict import CIMultiDictProxy

from authproxy.auth.bruteforce import FailureLimiter
from authproxy.auth.credentials import Credential, CredentialError, parse_credentials
from authproxy.auth.principal import GuessRefusedError, Principal, VerifyFailedError
from authproxy.auth.signature import SCHEME, signed_challenge
from authproxy.auth.verify import Verifier
from authproxy.errors import Denied, VerifyBusyError

log = structlog.stdlib.get_logger(__name__)

CHALLENGES: Final = (
    ("WWW-Authenticate", 'Basic realm="authproxy", charset="UTF-8"'),
    ("WWW-Authenticate", 'Bearer realm="authproxy"'),
)
BUSY_RETRY_AFTER: Final = "1"
TOO_MANY: Final = "too many failed authentications; retry later"


class AuthRefused(Denied):
    """An authentication refusal, with what the request presented (for audit).

    ``scheme`` and ``key_id`` are safe to record: the key id is public, the
    secret never appears.
    """

    def __init__(
        self,
        denied: Denied,
        scheme: str | None,
        key_id: str | None,
    ) -> None:
        super().__init__(denied.status, denied.reason, denied.message, denied.headers)
        self.scheme = scheme
        self.key_id = key_id


def unauthorized(reason: str) -> Denied:
    """Return the one 401 every authentication failure gets."""
    return Denied(401, reason, "unauthorized", CHALLENGES)


def blocked(wait: int) -> Denied:
    """Return the 429 of a client the brute-force limiter refuses."""
    return Denied(429, "client_blocked", TOO_MANY, (("Retry-After", str(wait)),))


@dataclass(frozen=True, slots=True)
class Target:
    """What an ``ollama`` CLI signature covers: the method, the path, ``ts``."""

    method: str
    path: str  # as sent, without the query
    query: str


async def authenticate(
    headers: CIMultiDictProxy[str],
    client: str,
    verifier: Verifier,
    failures: FailureLimiter,
    target: Target | None = None,
) -> Principal:
    """Verify the request's credential.

    Args:
        headers: the request headers (the credential is read from them).
        client: the client address, for the brute-force limiter.
        verifier: the key table's verifier.
        failures: the brute-force limiter shared by both listeners.
        target: the request line, which a signature covers; without it a
            signature is refused.

    Raises:
        AuthRefused: 401 for any bad credential, 429 for a blocked client, 503
            when the verification queue is full.

    Returns:
        The principal.
    """
    guess = failures.guess(client)
    scheme: str | None = None
    try:
        credential = parse_credentials(headers)
        scheme = credential.scheme
        if scheme == SCHEME:
            credential = _challenged(credential, target, verifier)
        principal = await verifier.authenticate(credential, guess)
    except GuessRefusedError:
        raise AuthRefused(blocked(guess.retry_after()), scheme, None) from None
    except (CredentialError, VerifyFailedError) as err:
        key_id = err.key_id if isinstance(err, VerifyFailedError) else None
        wait = guess.refused() if is_guess(err) else None
        if wait is not None:
            raise AuthRefused(blocked(wait), scheme, key_id) from None
        log.info("auth_failed", reason=err.reason, key_id=key_id, scheme=scheme)
        raise AuthRefused(unauthorized(err.reason), scheme, key_id) from None
    except VerifyBusyError:
        log.warning("auth_busy", pending=verifier.pending)
        busy = Denied(
            503, "verify_busy", "server busy", (("Retry-After", BUSY_RETRY_AFTER),)
        )
        raise AuthRefused(busy, scheme, None) from None
    structlog.contextvars.bind_contextvars(key_id=principal.key_id)
    return principal


def is_guess(err: CredentialError | VerifyFailedError) -> bool:
    """Tell whether a failure counts for the brute-force limiter.

    A request with no credential at all guesses nothing: browsers ask for a
    favicon, and many clients send a first request without credentials and
    add them after the ``401`` challenge. Counting those would lock out the
    people it protects; a wrong or malformed credential always counts.
    """
    return not (isinstance(err, CredentialError) and err.reason == "missing")


def _challenged(
    credential: Credential, target: Target | None, verifier: Verifier
) -> Credential:
    """Add to a signature the challenge it must sign, if ``ts`` is fresh.

    Raises:
        CredentialError: no target, or ``ts`` missing or outside the window.
    """
    if target is None:
        raise CredentialError("unsupported_scheme")
    challenge, ts = signed_challenge(
        target.method,
        target.path,
        target.query,
        verifier.now().timestamp(),
        verifier.signature_window,
    )
    return dataclasses.replace(credential, challenge=challenge, signed_at=ts)
