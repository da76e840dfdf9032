# The engine as an OCI image: `docker build -t poe-bot-engine .`, then run it with the
# variables of .env.example given at run time (`docker run --env-file .env -p 8080:8080
# poe-bot-engine`); compose.yaml runs two replicas behind nginx with Redis. Nothing secret
# is in the image: access keys, API keys and ENGINE_STATE_SECRET come from the environment.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# A user of its own: the engine runs as neither root nor the owner of its code. Its one
# writable folder holds limit counts and remembered vars when REDIS_URL is unset.
RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin engine \
    && install -d -o engine -g engine /var/lib/engine

# The pinned requirements first, in a layer of their own: editing a bot or the code
# rebuilds only the layers below. Wheels only (no compiler in a slim image, and PyYAML's
# wheels carry libyaml, which the engine requires).
COPY requirements.txt ./
RUN pip install --no-cache-dir --only-binary=:all: -r requirements.txt

COPY app.py schema.json ./
COPY engine/ engine/
COPY bots/ bots/

USER engine

ENV HOST=0.0.0.0 \
    PORT=8080 \
    STATE_DIR=/var/lib/engine

EXPOSE 8080

HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-m", "engine.healthcheck"]

# SIGTERM lets open answers finish for GRACEFUL_TIMEOUT seconds: give `docker stop
# --time` (compose: stop_grace_period) a little more.
CMD ["python", "app.py"]
