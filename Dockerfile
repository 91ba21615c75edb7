# claude-bridge: a small image built from the wheel, running as a non-root user.
#
# Config and data live in /data (a volume). On first start of `claude-bridge run` without
# /data/config.yaml the entrypoint writes one from the example and exits, saying what to fill in
# (the mautrix convention). Docker Compose runs `claude-bridge setup` first instead, which writes
# the config from CLAUDE_BRIDGE__SECTION__KEY environment overrides and the registration into
# /registration (see docker-compose.yml).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md config.example.yaml ./
COPY claude_bridge ./claude_bridge
COPY migrations ./migrations
# The bridge and every dependency as wheels, so the final stage installs offline.
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
# /data and /registration are owned by the bridge user so that named volumes mounted there
# start out writable by it (Docker copies the mount point's ownership into a new volume).
RUN useradd --system --uid 1337 --user-group --home-dir /data --no-create-home bridge \
    && mkdir /data /registration && chown bridge:bridge /data /registration
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels claude-bridge && rm -rf /wheels
COPY docker/entrypoint.sh /usr/local/bin/claude-bridge-entrypoint
USER bridge
WORKDIR /data
VOLUME /data
# 29340: appservice listener (Synapse → bridge); 29341: hook server (Claude Code → bridge).
EXPOSE 29340 29341
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["claude-bridge", "health", "-c", "/data/config.yaml"]
ENTRYPOINT ["claude-bridge-entrypoint"]
CMD ["claude-bridge", "run", "-c", "/data/config.yaml"]
