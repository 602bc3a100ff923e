# The service alone: the package and its dependencies (scikit-learn included), no test or
# bench extras, no torch. Build:  docker build -t ticketflow-orchestrator .
# Run (docs/deploy.md):  docker run -v "$PWD/config.yml:/config/config.yml:ro" \
#                          -v otai-var:/config/var ticketflow-orchestrator
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The service's own user. /config/var is where a config's relative state and ledger files
# land by default (beside /config/config.yml); /var/lib/open-ticket-ai is the place for the
# absolute ones (docs/deploy.md): both belong to that user, and a volume mounted on either
# starts out so.
RUN groupadd --system --gid 10001 otai \
    && useradd --system --uid 10001 --gid otai --home-dir /var/lib/open-ticket-ai \
       --create-home --shell /usr/sbin/nologin otai \
    && mkdir -p /config/var \
    && chown otai:otai /config /config/var

WORKDIR /build
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install . \
    && rm -rf /build
COPY scripts/healthcheck.py /usr/local/lib/otai/healthcheck.py

USER otai
WORKDIR /var/lib/open-ticket-ai

# /livez on the listener when the config turns it on, else `otai status` (the script says
# which and why on failure: `docker inspect --format '{{json .State.Health}}' CONTAINER`).
HEALTHCHECK --interval=30s --timeout=15s --start-period=60s --retries=3 \
    CMD ["python", "/usr/local/lib/otai/healthcheck.py", "/config/config.yml"]

# SIGTERM starts the orchestrator's shutdown: running executions get shutdown_timeout (30s by
# default) plus cancel_timeout (5s). Give `docker stop` that long: `docker stop -t 40`.
STOPSIGNAL SIGTERM
CMD ["otai", "run", "/config/config.yml"]
