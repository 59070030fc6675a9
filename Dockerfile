# authproxy container image: an authenticating reverse proxy in front of Ollama.
#
#   docker build -t authproxy .
#   docker run -p 11434:11434 -v authproxy-keys:/data/keys \
#       -e AUTHPROXY_UPSTREAM_URL=http://ollama-host:11434 authproxy
#
# Two stages: the builder turns this checkout into wheels (authproxy and all of
# its dependencies); the final stage installs them from a bind mount, so neither
# the wheels nor any build tooling end up in the image. All dependencies ship
# manylinux wheels, so no compiler is needed in either stage. The bind mount
# (RUN --mount) needs BuildKit, the default builder since Docker 23.
#
# The base image is pinned to a patch release. To pin its digest as well, look it
# up with `docker buildx imagetools inspect python:3.11.16-slim-bookworm` and
# append `@sha256:...` to both FROM lines.

FROM python:3.11.16-slim-bookworm AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY authproxy/ ./authproxy/
RUN pip wheel --wheel-dir /wheels .


FROM python:3.11.16-slim-bookworm

LABEL org.opencontainers.image.title="authproxy" \
      org.opencontainers.image.description="Authenticating, byte-transparent streaming reverse proxy for Ollama" \
      org.opencontainers.image.licenses="Apache-2.0"

# A fixed, unprivileged uid/gid, so volume and Secret permissions can be planned
# (Kubernetes runs the pod as 10001 too). /data/keys and /data/audit belong to it:
# a new named volume copies that ownership, so the proxy can create its key store
# and audit log there.
RUN groupadd --system --gid 10001 authproxy \
    && useradd --system --uid 10001 --gid authproxy --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin authproxy \
    && mkdir -p /data/keys /data/audit /data/tls \
    && chown authproxy:authproxy /data/keys /data/audit \
    && chmod 0700 /data/keys

# Install the wheels without a package index, then remove pip itself: the running
# image needs neither an installer nor build tooling.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels /wheels/authproxy-*.whl \
    && pip uninstall --yes pip setuptools wheel \
    && authproxy --version

# Settings for the container; every one can be overridden with `-e` / `environment:`.
# AUTHPROXY_AUDIT_FILE, AUTHPROXY_TLS_CERT/KEY and AUTHPROXY_ADMIN_LISTEN are read
# by versions that have those features; older ones ignore unknown AUTHPROXY_* names.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    AUTHPROXY_LISTEN_HOST=0.0.0.0 \
    AUTHPROXY_LISTEN_PORT=11434 \
    AUTHPROXY_UPSTREAM_URL=http://ollama:11434 \
    AUTHPROXY_KEYS_FILE=/data/keys/keys.yaml \
    AUTHPROXY_AUDIT_FILE=/data/audit/usage.jsonl \
    AUTHPROXY_LOG_FORMAT=json

# /data/keys also gets jwt-signing.yaml, the JWT signing keys, on the first start.
# With the key store mounted read-only, mount that file too and point
# AUTHPROXY_JWT_KEY_FILE at it (docs/deployment.md).
WORKDIR /data
VOLUME ["/data/keys", "/data/audit"]
USER 10001:10001
EXPOSE 11434

# `authproxy healthcheck` probes /healthz on the configured listener (a wildcard
# host is probed on loopback), so the image needs no curl or wget.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["authproxy", "healthcheck"]

# `docker run IMAGE keys create NAME` (or `docker compose run --rm authproxy ...`)
# runs any other subcommand with the same settings and volumes.
ENTRYPOINT ["authproxy"]
CMD ["serve"]
