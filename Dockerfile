# claude-bridge: a small image built from the wheel, running as a non-root user.
# Config and data live in /data (a volume). On first start without /data/config.yaml the
# entrypoint writes one from the example and exits, saying what to fill in.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md config.example.yaml ./
COPY claude_bridge ./claude_bridge
COPY migrations ./migrations
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --uid 1337 --home-dir /data bridge \
    && mkdir /data && chown bridge /data
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
COPY docker/entrypoint.sh /usr/local/bin/claude-bridge-entrypoint
USER bridge
WORKDIR /data
VOLUME /data
# 29340: appservice listener (Synapse → bridge); 29341: hook server (Claude Code → bridge).
EXPOSE 29340 29341
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:29341/health', timeout=2).status == 200 else 1)"
ENTRYPOINT ["claude-bridge-entrypoint"]
CMD ["claude-bridge", "run", "-c", "/data/config.yaml"]
