# Pacing CDS container: the wheel (rules and migrations inside) on a slim Python, run by gunicorn as a non-root user.
#   podman build --format docker -t pacing-cds .      (or docker build -t pacing-cds .)
#   podman run -p 8080:8080 -v pacing-cds-data:/data -e PACING_CDS_ISSUERS_FILE=... pacing-cds
# Every setting is a PACING_CDS_* environment variable (README, Settings). --format docker keeps the HEALTHCHECK.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# durable-rules is published only as source: its C core needs a compiler, in this stage only. Not pinned: the
# stage is thrown away, and pinned Debian versions leave the mirror at each point release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc g++ libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# The dependencies first, in a layer of their own, into the virtual environment that the runtime stage copies whole
# (no compiler there): the layer depends on pyproject.toml alone, so a change to the code or the rules rebuilds in
# seconds, not minutes. --use-pep517: durable-rules has no pyproject.toml; it is built in an isolated environment with
# its own setuptools and wheel, whatever the base image's pip has.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && python -m venv /opt/pacing-cds \
    && /opt/pacing-cds/bin/python -m pip install --no-cache-dir --disable-pip-version-check --use-pep517 \
        -r /tmp/requirements.txt
# Then the wheel (rules and migrations inside), installed without its dependencies (they are there), and checked:
# pip check fails the build if any requirement of the wheel is missing or at a version it does not accept.
COPY README.md ./
COPY cds ./cds
COPY rules ./rules
RUN python -m pip wheel --no-cache-dir --disable-pip-version-check --no-deps --wheel-dir /dist . \
    && /opt/pacing-cds/bin/python -m pip install --no-cache-dir --disable-pip-version-check --no-deps \
        /dist/pacing_cds-*.whl \
    && /opt/pacing-cds/bin/python -m pip check

FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 cds \
    && useradd --system --uid 10001 --gid cds --no-create-home --home-dir /data --shell /usr/sbin/nologin cds \
    && mkdir /data && chown cds:cds /data
COPY --from=build /opt/pacing-cds /opt/pacing-cds
ENV PATH=/opt/pacing-cds/bin:$PATH \
    PACING_CDS_HOST=0.0.0.0 \
    PACING_CDS_ALLOW_ALL_INTERFACES=true \
    PACING_CDS_PORT=8080 \
    PACING_CDS_DATABASE_URL=sqlite:////data/pacing-cds.db \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080
# No curl in a slim image: the interpreter asks /healthz (200 when the process and its database answer).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PACING_CDS_PORT', '8080'), timeout=4)"]
# pacing-cds serve checks the rules, migrates the database, then runs gunicorn (asyncio workers that read whole requests, PACING_CDS_WORKERS).
CMD ["pacing-cds", "serve"]
