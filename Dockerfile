# triage: watches an Amazon seller's mailbox and tells the seller what matters.
# The install steps are the same ones .ci/run exercises: pip install of this project.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    TRIAGE_STATE_DIR=/data \
    TRIAGE_MODEL_DIR=/opt/triage/models \
    TRIAGE_RULES=/config/rules.yaml

WORKDIR /opt/triage
COPY pyproject.toml README.md rules.yaml ./
COPY triage ./triage
COPY models/triage-model.json models/triage-model.npz models/metadata.json models/README.md ./models/
RUN python -m pip install --no-compile . \
    && mkdir -p /config /data \
    && cp rules.yaml /config/rules.yaml \
    && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin triage \
    && chown -R triage /data /config

USER triage
VOLUME ["/data"]
EXPOSE 9464
HEALTHCHECK --interval=60s --timeout=10s --start-period=60s --retries=3 \
    CMD ["triage", "health"]
CMD ["triage", "run"]
