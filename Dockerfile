# syntax=docker/dockerfile:1
#
# mailsvc image: one image for every process (`serve`, `worker`, `migrate`,
# `check`); compose/docker-compose.yml picks the subcommand.
#
#   docker build -t mailsvc .
#   docker run --rm -p 5000:5000 --env-file .env mailsvc           # HTTP API, a process per core
#   docker run --rm -p 5000:5000 --env-file .env mailsvc serve --workers 2
#   docker run --rm --env-file .env mailsvc worker                 # arq worker
#
# Both stages use the same base image so the venv's interpreter symlinks
# (/opt/venv/bin/python -> /usr/local/bin/python3.11) stay valid after the copy.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /build

# Every dependency has a manylinux wheel for CPython 3.11, so no compiler is
# installed here. constraints.txt pins the whole tree for a reproducible image.
COPY pyproject.toml constraints.txt README.md ./
COPY src ./src

RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir -c constraints.txt .


FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="mailsvc" \
      org.opencontainers.image.description="Multi-tenant email API: IMAP mirror in PostgreSQL, IDLE push, REST, SMTP outbox" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH="/opt/venv/bin:${PATH}" \
    PORT=5000 \
    DATA_DIR=/data

# uid/gid 1000 so bind-mounted files line up with the usual first desktop user.
# /data is DATA_DIR and /data/search the search index (SEARCH_INDEX_DIR's default
# under it), owned by that user: a named volume mounted there starts with this
# ownership, so the api and the worker can share it (compose/docker-compose.yml).
RUN groupadd --gid 1000 mailsvc \
    && useradd --uid 1000 --gid 1000 --no-log-init --no-create-home \
       --home-dir /app --shell /usr/sbin/nologin mailsvc \
    && mkdir -p /data/search \
    && chown -R 1000:1000 /data

WORKDIR /app

COPY --from=builder /opt/venv /opt/venv
# `mailsvc migrate` runs alembic with alembic.ini from the working directory.
COPY alembic ./alembic
COPY alembic.ini ./

USER 1000:1000

EXPOSE 5000

# The slim image has no curl; the interpreter is already there. urlopen raises
# (exit 1) on a refused connection, a timeout or any non-2xx answer.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('PORT', '5000'), timeout=3)"]

# `serve` runs API_WORKERS api processes: by default (0) one per core this container
# may use (its CPU limit, `--cpus`, when it has one). Each drains on SIGTERM within
# SHUTDOWN_GRACE_SECONDS (20): give `docker stop -t` / the orchestrator a little more.
ENTRYPOINT ["mailsvc"]
CMD ["serve"]
