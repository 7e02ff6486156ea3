# Needs BuildKit (the default builder of current Docker) for the RUN --mount below.
# One image for every beatkeeper role; the pod spec chooses the command (no ENTRYPOINT):
#   beatkeeper operator | beatkeeper migrate [--wait] | beatkeeper smoke
#   celery -A beatkeeper_worker beat|worker|flower ...
# Extend it with your own task modules:
#   FROM beatkeeper:<version>
#   COPY myapp/ /app/myapp/          (root-owned: readable, not writable, by uid 10001)
#   ENV BEATKEEPER_IMPORTS=myapp.tasks

ARG PYTHON_IMAGE=python:3.12-slim

# --- builder: wheels of the project and every dependency -------------------------------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
# Compilers only here, for any dependency without a wheel for this platform.
RUN apt-get update \
 && apt-get install --yes --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Dependencies first, from pyproject.toml alone: this layer is rebuilt only when the
# dependency list changes, not on every source edit.
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt \
 && pip wheel --wheel-dir /wheels -r requirements.txt
COPY src/ src/
COPY operator/ operator/
COPY worker/ worker/
COPY examples/ examples/
RUN pip wheel --no-deps --wheel-dir /wheels .

# --- runtime: wheels installed, no compilers, no build tools ----------------------------
FROM ${PYTHON_IMAGE} AS runtime
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    BEATKEEPER_LOG_FORMAT=json \
    HOME=/app \
    PYTHONPATH=/app
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels beatkeeper \
 && groupadd --gid 10001 beatkeeper \
 && useradd --uid 10001 --gid 10001 --home-dir /app --no-create-home --shell /usr/sbin/nologin beatkeeper \
 && mkdir -p /app \
 && chown 10001:10001 /app
WORKDIR /app
# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
