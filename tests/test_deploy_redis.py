"""Deployment files for replicas sharing Redis: compose and Kubernetes variants.

Checked the way tests/test_deploy.py checks the single-proxy files: the compose
file against the compose-spec schema and by a real ``docker compose config``,
the manifests by ``kubernetes-validate`` in strict mode, and the settings they
pass through the proxy's own configuration loader.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from authproxy.config.load import load_config
from tests.test_deploy import (
    COMPOSE,
    SLOW_TOOL,
    compose_cli,
    compose_config,
    known_variables,
    schema_errors,
)

COMPOSE_REDIS: Final = COMPOSE / "docker-compose.redis.yml"
KUBERNETES_REDIS: Final = Path(__file__).resolve().parent.parent / (
    "deploy/kubernetes/redis"
)
PROXIES: Final = ("authproxy-a", "authproxy-b")

__all__ = ["compose_cli"]  # the fixture, shared with tests/test_deploy.py


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE_REDIS.read_text(encoding="utf-8"))
    return data


def _manifests() -> list[dict[str, Any]]:
    return [
        doc
        for path in sorted(KUBERNETES_REDIS.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8"))
        if doc is not None
    ]


def _resource(kind: str, name: str) -> dict[str, Any]:
    (found,) = [
        d for d in _manifests() if d["kind"] == kind and d["metadata"]["name"] == name
    ]
    return found


def _pod() -> dict[str, Any]:
    spec: dict[str, Any] = _resource("StatefulSet", "ollama")["spec"]["template"]
    return spec


def _sidecar_env() -> dict[str, Any]:
    (sidecar,) = [c for c in _pod()["spec"]["containers"] if c["name"] == "authproxy"]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in sidecar["env"]}


# --------------------------------------------------------------------------- compose


def test_the_compose_file_matches_the_compose_spec_schema() -> None:
    """The file, as written, is valid under the current compose spec."""
    assert schema_errors(COMPOSE_REDIS) == ""


@SLOW_TOOL
def test_compose_config_accepts_it(compose_cli: list[str]) -> None:
    """A real `docker compose config` resolves both pairs and Redis."""
    config = compose_config(compose_cli, COMPOSE_REDIS)
    assert sorted(config["services"]) == [
        "authproxy-a",
        "authproxy-b",
        "ollama-a",
        "ollama-b",
        "redis",
    ]
    for name in PROXIES:
        env = config["services"][name]["environment"]
        assert env["AUTHPROXY_STATE_BACKEND"] == "redis"


def test_only_the_proxies_reach_redis_and_only_they_are_published() -> None:
    """Redis and each Ollama sit on internal networks; each proxy publishes a port."""
    compose = _compose()
    services = compose["services"]
    on_state = sorted(n for n, s in services.items() if "state" in s["networks"])
    assert on_state == ["authproxy-a", "authproxy-b", "redis"]
    for network in ("state", "ollama-a", "ollama-b"):
        assert compose["networks"][network] == {"internal": True}
    published = sorted(n for n, s in services.items() if "ports" in s)
    assert published == list(PROXIES)
    assert services["redis"]["networks"] == ["state"]


def test_the_proxies_settings_load_and_name_the_password_variable() -> None:
    """Each proxy's environment is a valid redis configuration, password by name."""
    services = _compose()["services"]
    for name in PROXIES:
        env = {k: str(v) for k, v in services[name]["environment"].items()}
        names = {k for k in env if k.startswith("AUTHPROXY_")}
        assert names <= known_variables(), names - known_variables()
        state = load_config(None, None, env).state
        assert state.backend == "redis"
        assert state.redis_password_env == "REDIS_PASSWORD"
        assert env["REDIS_PASSWORD"] == "${REDIS_PASSWORD}"  # from the host, not here
    assert services["redis"]["environment"]["REDIS_PASSWORD"] == "${REDIS_PASSWORD}"
    assert "requirepass %s" in services["redis"]["command"][-1]  # stdin, not argv


# ------------------------------------------------------------------------ Kubernetes


def test_kubernetes_files() -> None:
    """A StatefulSet, two Services, Redis and the NetworkPolicy around it."""
    assert sorted((d["kind"], d["metadata"]["name"]) for d in _manifests()) == [
        ("Deployment", "redis"),
        ("NetworkPolicy", "redis"),
        ("PersistentVolumeClaim", "redis-data"),
        ("Service", "ollama"),
        ("Service", "ollama-replicas"),
        ("Service", "redis"),
        ("StatefulSet", "ollama"),
    ]


@pytest.mark.parametrize("version", ["1.29.0", kubernetes_validate.latest_version()])
def test_kubernetes_manifests_are_schema_valid(version: str) -> None:
    """Every manifest validates strictly against the Kubernetes schemas."""
    for doc in _manifests():
        kubernetes_validate.validate(doc, version, strict=True)


def test_replicas_share_redis_with_the_password_from_a_secret() -> None:
    """More than one replica, the redis backend, and no password in the manifest."""
    assert _resource("StatefulSet", "ollama")["spec"]["replicas"] > 1
    env = _sidecar_env()
    names = {k for k in env if k.startswith("AUTHPROXY_")}
    assert names <= known_variables(), names - known_variables()
    assert env["AUTHPROXY_STATE_BACKEND"] == "redis"
    assert env["AUTHPROXY_STATE_REDIS_PASSWORD_ENV"] == "REDIS_PASSWORD"
    assert env["REDIS_PASSWORD"] == {
        "secretKeyRef": {"name": "authproxy-redis", "key": "password"}
    }
    plain = {k: v for k, v in env.items() if isinstance(v, str)}
    assert load_config(None, None, plain).state.redis_url == "redis://redis:6379/0"
    volumes = {v["name"] for v in _pod()["spec"]["volumes"]}
    assert "keys" not in volumes  # the keys are in Redis, not in a Secret


def test_only_the_sidecars_reach_redis() -> None:
    """The NetworkPolicy admits the ollama pods, on Redis's port, and nothing else."""
    policy = _resource("NetworkPolicy", "redis")["spec"]
    redis_labels = _resource("Deployment", "redis")["spec"]["template"]["metadata"]
    assert (
        policy["podSelector"]["matchLabels"].items() <= redis_labels["labels"].items()
    )
    assert policy["policyTypes"] == ["Ingress"]
    (rule,) = policy["ingress"]
    (source,) = rule["from"]
    assert (
        source["podSelector"]["matchLabels"].items()
        <= _pod()["metadata"]["labels"].items()
    )
    assert rule["ports"] == [{"protocol": "TCP", "port": 6379}]
