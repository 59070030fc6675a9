"""Model names as Ollama reads them: source suffix, name parts, allow-list globs.

Pure functions. Everything here follows Ollama's own parsers
(``internal/modelref`` and ``types/model/name.go``, shared/ollama-wire.md §8b),
so the proxy decides on the model Ollama will run, however the name is spelled:

- surrounding whitespace is trimmed;
- the text after the last ``:`` is a *source suffix* when, trimmed and
  lower-cased, it is ``cloud`` or ``local``, or ends in ``-cloud`` and holds no
  ``/`` (``gpt-oss:120b-CLOUD``, ``x:y:Cloud``, ``gpt-oss:cloud`` and a tab);
  a cloud model runs on ollama.com under the host owner's account;
- the rest is ``[host/][namespace/]model[:tag]`` with Ollama's defaults
  (``registry.ollama.ai``, ``library``, ``latest``) and character rules; a
  name Ollama would refuse is refused here too, before anything is forwarded.

Allow-lists compare the *pull name*: the base name, plus ``-cloud``
(``:cloud`` without a tag) for cloud models, exactly as ``ollama pull`` and
``/api/tags`` spell it, lower-cased (Ollama matches names case-insensitively),
with the defaults left out. Globs match segment by segment: ``*`` and ``?``
never cross a ``/``.
"""

from __future__ import annotations

import fnmatch
import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

# Ollama's longest valid name is host (350) + namespace, model and tag (80
# each) plus separators and a source suffix; anything longer is refused before
# it is parsed, logged or counted.
MAX_NAME_LENGTH: Final = 1024
DEFAULT_HOST: Final = "registry.ollama.ai"
DEFAULT_NAMESPACE: Final = "library"
DEFAULT_TAG: Final = "latest"
_GLOB_CHARS: Final = frozenset("*?[")
# Ollama's isValidPart: a first character from [A-Za-z0-9_], then these.
_PART_RES: Final = {
    "host": re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:-]{0,349}"),
    "namespace": re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,79}"),
    "model": re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}"),
    "tag": re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}"),
}


class ModelNameError(ValueError):
    """A model name Ollama would refuse; the message says why, without the name."""


@dataclass(frozen=True, slots=True)
class ModelRef:
    """One model a request names, as Ollama will resolve it.

    Attributes:
        name: the value Ollama uses (trimmed), for the audit log.
        cloud: whether Ollama sends the request to ollama.com.
        pull_name: the lower-cased pull name that allow-lists match.
    """

    name: str
    cloud: bool
    pull_name: str


def _source_suffix(raw: str) -> tuple[str, str | None]:
    """Split Ollama's source suffix off a trimmed name (``parseSourceSuffix``).

    Returns:
        The base name and ``"cloud"``, ``"local"`` or ``None``.
    """
    head, colon, tail = raw.rpartition(":")
    if not colon:
        return raw, None
    suffix = tail.strip()
    lowered = suffix.lower()
    if lowered in {"cloud", "local"}:
        return head, lowered
    if "/" not in suffix and lowered.endswith("-cloud"):
        return f"{head}:{suffix[: -len('-cloud')]}", "cloud"
    return raw, None


def _parts(base: str) -> tuple[str, str, str, str]:
    """Split a base name into host, namespace, model and tag (``ParseName``).

    Raises:
        ModelNameError: a part is missing or has characters Ollama refuses.
    """
    rest, host, namespace, tag = base, DEFAULT_HOST, DEFAULT_NAMESPACE, DEFAULT_TAG
    # Cut from the right as ParseNameBare does; an empty part stays empty and
    # fails the check below, as Ollama's MissingPart does.
    if rest.rfind(":") > rest.rfind("/"):
        rest, _, tag = rest.rpartition(":")
    rest, slash, model = rest.rpartition("/")
    if slash:
        rest, slash, namespace = rest.rpartition("/")
        if slash:
            # What is left is the host, after an optional scheme (http(s)://),
            # which only matters for pulls. A host holding "/" is invalid.
            host = rest.partition("://")[2] if "://" in rest else rest
    for kind, part in (
        ("host", host),
        ("namespace", namespace),
        ("model", model),
        ("tag", tag),
    ):
        if not _PART_RES[kind].fullmatch(part):
            raise ModelNameError("invalid model name")
    return host, namespace, model, tag


def _shortest(host: str, namespace: str, model: str, tag: str) -> str:
    """Return the name without default parts, lower-cased (``DisplayShortest``)."""
    host, namespace = host.lower(), namespace.lower()
    name = f"{model}:{tag}".lower()
    if host != DEFAULT_HOST:
        return f"{host}/{namespace}/{name}"
    if namespace != DEFAULT_NAMESPACE:
        return f"{namespace}/{name}"
    return name


@functools.lru_cache(maxsize=4096)
def parse_model(value: str) -> ModelRef:
    """Resolve a model name the way Ollama will (results are remembered).

    Args:
        value: the name as the request spelled it (untrusted).

    Raises:
        ModelNameError: too long, empty, conflicting source suffixes, or not a
            valid Ollama name.

    Returns:
        The resolved reference.
    """
    if len(value) > MAX_NAME_LENGTH:
        raise ModelNameError(f"longer than {MAX_NAME_LENGTH} characters")
    name = value.strip()
    if not name:
        raise ModelNameError("empty")
    base, source = _source_suffix(name)
    if source is not None and _source_suffix(base)[1] is not None:
        raise ModelNameError("use either :local or :cloud, not both")
    host, namespace, model, tag = _parts(base)
    if source == "cloud":
        # The name Ollama pulls and lists a cloud model under (NormalizePullName).
        tag = f"{tag}-cloud" if base.rfind(":") > base.rfind("/") else "cloud"
    return ModelRef(
        name=name,
        cloud=source == "cloud",
        pull_name=_shortest(host, namespace, model, tag),
    )


def is_cloud_model(value: str) -> bool:
    """Tell whether Ollama would run this model on ollama.com (§1e, §8b)."""
    try:
        return parse_model(value).cloud
    except ModelNameError:
        return False


def normalize_pattern(pattern: str) -> str:
    """Return an allow-list pattern in pull-name form (defaults and tag filled in).

    A pattern without glob characters is a plain name and is normalised like
    one (``llama3.2`` means ``llama3.2:latest``); a glob is only lower-cased and
    stripped of the default host and namespace it spells out.
    """
    text = pattern.strip()
    if not _GLOB_CHARS.intersection(text):
        try:
            return parse_model(text).pull_name
        except ModelNameError:
            return text.lower()
    lowered = text.lower()
    for prefix in (f"{DEFAULT_HOST}/{DEFAULT_NAMESPACE}/", f"{DEFAULT_NAMESPACE}/"):
        if lowered.startswith(prefix) and lowered.count("/") == prefix.count("/"):
            return lowered[len(prefix) :]
    return lowered


def _glob_match(pull_name: str, pattern: str) -> bool:
    """Match segment by segment, so ``*`` never crosses a ``/``."""
    names, globs = pull_name.split("/"), pattern.split("/")
    if len(names) != len(globs):
        return False
    return all(fnmatch.fnmatchcase(n, g) for n, g in zip(names, globs, strict=True))


def pattern_matches(ref: ModelRef, pattern: str) -> bool:
    """Tell whether one allow-list pattern admits ``ref``.

    A tagless glob such as ``llama3.2*`` also matches the tag-less spelling, so
    ``llama3.2*`` admits ``llama3.2`` (``llama3.2:latest``).
    """
    normal = normalize_pattern(pattern)
    if _glob_match(ref.pull_name, normal):
        return True
    untagged = ref.pull_name.removesuffix(f":{DEFAULT_TAG}")
    return untagged != ref.pull_name and _glob_match(untagged, normal)


def model_allowed(ref: ModelRef, rules: Iterable[tuple[str, ...]]) -> bool:
    """Tell whether every non-empty allow-list in ``rules`` admits ``ref``.

    A key's list and a JWT's narrower list must both admit the model.
    """
    return all(
        any(pattern_matches(ref, p) for p in patterns) for patterns in rules if patterns
    )


def name_allowed(value: str, rules: Iterable[tuple[str, ...]]) -> bool:
    """Tell whether a listed model name is admitted (an invalid name never is)."""
    try:
        ref = parse_model(value)
    except ModelNameError:
        return False
    return model_allowed(ref, rules)
