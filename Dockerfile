# The image the compose file's init, worker and api services run: llm-lineage with the extras that
# production mode needs (Kafka, PostgreSQL, S3), as an unprivileged user. The entry point is the `lineage`
# command, so a container's command is its subcommand: `worker`, `up --host 0.0.0.0`, `db upgrade`, ...
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY producers ./producers
COPY streams ./streams
COPY retention ./retention
COPY lineage_api ./lineage_api
RUN pip install ".[postgres,kafka,s3]" && cd / && rm -rf /src

# /data (spool, embedded files) and /keys (the checkpoint signing key) belong to the service user, so named
# volumes mounted there start out writable by it.
RUN useradd --create-home --uid 10001 --user-group lineage \
    && mkdir -p /data /keys \
    && chown lineage:lineage /data /keys
USER lineage
WORKDIR /data

ENTRYPOINT ["lineage"]
CMD ["--help"]
