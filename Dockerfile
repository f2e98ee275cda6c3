# syntax=docker/dockerfile:1
# promotion-exporter: a wheel built in one stage, installed into a venv in a clean second one.
# The final image runs as a numeric non-root user and writes nothing at run time except to /tmp
# (which a read-only deployment mounts as an emptyDir, see deploy/base/deployment.yaml).

FROM python:3.11-slim AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY exporter ./exporter
RUN pip wheel --no-deps --wheel-dir /dist .

FROM python:3.11-slim
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="promotion-exporter" \
      org.opencontainers.image.description="Prometheus exporter and alerting-rules pack for GitOps promotion pipelines built on Flux OCI artifacts" \
      org.opencontainers.image.source="https://github.com/promotion-exporter/promotion-exporter" \
      org.opencontainers.image.documentation="https://github.com/promotion-exporter/promotion-exporter/blob/main/README.md" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# pip compiles the bytecode at install time, so a read-only root filesystem costs nothing later.
RUN --mount=type=bind,from=builder,source=/dist,target=/dist \
    python -m venv /opt/venv \
    && /opt/venv/bin/pip install /dist/*.whl
USER 65532:65532
EXPOSE 9883
ENTRYPOINT ["/opt/venv/bin/promotion-exporter"]
CMD ["--config.file=/etc/promotion-exporter/config.yml"]
