# syntax=docker/dockerfile:1
# logaas-webhook: the admission webhook and the DaemonSet companion in one image.
#   docker build -t your-registry.cr.cloud.ru/logaas-webhook:0.1.0 .
# Multi-stage: the build stage installs the package into a virtualenv (binary wheels only, so
# no compiler is needed anywhere); the final image holds that virtualenv and nothing else of
# the build, runs as a numeric non-root user and listens on 8443 (HTTPS only).
ARG PYTHON_IMAGE=python:3.12-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/venv
COPY pyproject.toml README.md ./
COPY webhook ./webhook
# The slim base has no compiler: every dependency must come as a wheel, or the build fails
# here rather than smuggling build tools into the image.
RUN /opt/venv/bin/pip install --no-cache-dir --prefer-binary . \
    && /opt/venv/bin/python -m compileall -q /opt/venv/lib \
    && mkdir -p /app/certs

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="logaas-webhook" \
      org.opencontainers.image.description="Fluent Bit sidecar injector and DaemonSet companion for Cloud.ru LogaaS" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LOGAAS_HOST=0.0.0.0 \
    LOGAAS_PORT=8443 \
    LOGAAS_CERT_DIR=/app/certs
COPY --from=build /opt/venv /opt/venv
# The only writable place: self-generated certificates when serve runs on its defaults.
COPY --from=build --chown=10001:10001 /app /app
WORKDIR /app
USER 10001:10001
EXPOSE 8443
ENTRYPOINT ["logaas-webhook"]
CMD ["serve"]
