# Needs BuildKit (the default builder of current Docker) or podman/buildah for RUN --mount.
# Targets:
#   production (the default: `docker build .`)  beatkeeper alone, for your own task images
#   examples                                    plus the example workloads (beatkeeper_examples),
#                                               which the kind values run: beatkeeper-examples:dev
# One image for every role; the pod spec chooses the program with `args:` (tini, the
# ENTRYPOINT, runs it as its child so SIGTERM reaches it and zombies are reaped):
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
# dependency list changes, not on every source or README edit.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt \
 && pip wheel --wheel-dir /wheels -r requirements.txt
COPY README.md ./
COPY src/ src/
COPY operator/ operator/
COPY worker/ worker/
RUN pip wheel --no-deps --wheel-dir /dist/beatkeeper .
COPY examples/ examples/
RUN pip wheel --no-deps --wheel-dir /dist/examples ./examples

# --- runtime: wheels installed, no compilers, no build tools ----------------------------
FROM ${PYTHON_IMAGE} AS runtime
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore \
    BEATKEEPER_LOG_FORMAT=json \
    HOME=/app \
    PYTHONPATH=/app
# tini: PID 1 forwards signals to the program and reaps its children.
RUN apt-get update \
 && apt-get install --yes --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/*
# The dependencies, then the project: a source edit reinstalls only beatkeeper's own wheel.
# Copying requirements.txt (and each wheel) keys the layer cache on what it installs: some
# builders (buildah) do not look at a bind mount's content when they reuse a layer.
COPY --from=builder /src/requirements.txt /tmp/requirements.txt
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels --requirement /tmp/requirements.txt \
 && rm /tmp/requirements.txt \
 && groupadd --gid 10001 beatkeeper \
 && useradd --uid 10001 --gid 10001 --home-dir /app --no-create-home --shell /usr/sbin/nologin beatkeeper \
 && mkdir -p /app \
 && chown 10001:10001 /app
COPY --from=builder /dist/beatkeeper/ /tmp/dist/
RUN pip install --no-index --no-deps /tmp/dist/*.whl \
 && rm -rf /tmp/dist
WORKDIR /app
ENTRYPOINT ["/usr/bin/tini", "--"]
# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001

# --- examples: the runtime plus the example workloads (opt-in) --------------------------
FROM runtime AS examples
USER 0:0
COPY --from=builder /dist/examples/ /tmp/dist/
RUN pip install --no-index --no-deps /tmp/dist/*.whl \
 && rm -rf /tmp/dist
USER 10001:10001

# --- production: the default target, beatkeeper without the examples -------------------
FROM runtime AS production
