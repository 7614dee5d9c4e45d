# syntax=docker/dockerfile:1
# The operator image: `rolloutctl operator`, the Kopf operator that the Helm chart deploys.
# Build it from the repository root:
#
#   docker build -f sandbox-image/operator.Dockerfile -t rollout-operator/operator:dev .
#
# sandbox-image/README.md is its contract; tests/images checks this file against it.

# Builder: the same stage as the sandbox image's, so that a build of both shares its layers.
FROM python:3.12-slim AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
 && python -m venv /opt/venv \
 && /opt/venv/bin/pip install /wheels/rollout_operator-*.whl "uv==0.13.9"

# Final: the operator only talks to the Kubernetes API; it runs no git and no user code.
FROM python:3.12-slim
RUN groupadd --system --gid 65532 rollout \
 && useradd --system --uid 65532 --gid 65532 --home-dir /tmp --no-create-home \
      --shell /usr/sbin/nologin rollout
COPY --from=builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    HOME=/tmp \
    TMPDIR=/tmp \
    XDG_CACHE_HOME=/tmp/.cache \
    XDG_CONFIG_HOME=/tmp/.config \
    XDG_DATA_HOME=/tmp/.local/share \
    PIP_CACHE_DIR=/tmp/.cache/pip \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    UV_CACHE_DIR=/tmp/.cache/uv \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
WORKDIR /tmp
USER 65532:65532
ENTRYPOINT ["rolloutctl"]
CMD ["operator"]
