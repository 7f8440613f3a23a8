# triage: watches an Amazon seller's mailbox and tells the seller what matters.
# The image installs the same wheel .ci/run builds and tests: the model and the default
# rules are inside the package, so no TRIAGE_MODEL_DIR is needed.

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md LICENSE rules.yaml ./
COPY triage ./triage
# The wheel takes only what it ships from here (see pyproject.toml's package data).
COPY models ./models
RUN python -m pip wheel --no-cache-dir --no-deps --wheel-dir /dist .

FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    TRIAGE_STATE_DIR=/data \
    TRIAGE_RULES=/config/rules.yaml
COPY --from=build /dist /dist
# Byte-compiled at install time: the non-root user cannot write __pycache__ later.
RUN python -m pip install --compile /dist/triage-*.whl \
    && rm -rf /dist \
    && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin triage \
    && mkdir -p /config /data \
    && python -c "import shutil, triage.resources as r; \
shutil.copyfile(r.default_rules_path(), '/config/rules.yaml')" \
    && chown -R triage /data /config

USER triage
WORKDIR /data
# /config is a folder, not a single file: an editor that saves by replacing the file
# (a new inode) is still seen, and the rules reload live.
VOLUME ["/data", "/config"]
EXPOSE 9464
HEALTHCHECK --interval=60s --timeout=10s --start-period=60s --retries=3 \
    CMD ["triage", "health"]
CMD ["triage", "run"]
