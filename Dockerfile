# syntax=docker/dockerfile:1
# ev-gateway as a container: `gateway run` on its built-in defaults (Teltonika 5027, GT06 5023,
# AIS-140 5024 and EVB1 5100 on all interfaces, metrics 9108, health checks 8080), the local sink in the volume
# /var/lib/ev-gateway.
#
#   docker build -t ev-gateway .
#   docker run --rm --stop-timeout 35 -p 5027:5027 -p 5023:5023 -p 5024:5024 -p 5100:5100 -p 9108:9108 \
#       -p 8080:8080 ev-gateway
#   docker run ... -v /etc/ev-gateway:/etc/ev-gateway:ro --env-file /etc/ev-gateway/gateway.env \
#       ev-gateway run --config /etc/ev-gateway/gateway.toml
#
# --stop-timeout 35: SIGTERM starts a drain of up to shutdown_timeout_s (20 s); Docker's default
# 10 s would SIGKILL it half way (ECS: stopTimeout, Kubernetes: terminationGracePeriodSeconds).
# The environment set below outranks the TOML file: data directory, metrics and health hosts (all
# interfaces: published ports and the NLB reach the container from outside) stay as set here
# unless overridden with -e.

# Builder: the project as a wheel from these sources, with its dependencies, in a venv. Every
# dependency ships binary wheels for amd64 and arm64, so no compiler or apt-get is needed.
FROM python:3.11-slim-bookworm AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/ev-gateway/.venv
WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY gateway/ gateway/
COPY parser/ parser/
COPY codecs/ codecs/
COPY config/ config/
# Not editable: codecs/ and config/ are data-files (pyproject.toml) and land in
# .venv/share/ev-gateway, where the installed gateway loads its codec layouts from. check-config
# fails the build if they did not (it resolves every configured codec).
# constraints.txt: the image gets exactly the dependency versions the suite tested.
RUN /opt/ev-gateway/.venv/bin/pip install --no-cache-dir -c constraints.txt . \
    && /opt/ev-gateway/.venv/bin/gateway check-config \
        /opt/ev-gateway/.venv/share/ev-gateway/config/local.toml

# Runtime: the same interpreter image and venv path (a venv is not relocatable), nothing else.
FROM python:3.11-slim-bookworm
RUN groupadd --system --gid 10001 ev-gateway \
    && useradd --system --no-log-init --uid 10001 --gid 10001 --home-dir /nonexistent \
        --shell /usr/sbin/nologin ev-gateway \
    && install -d -o 10001 -g 10001 -m 0700 /var/lib/ev-gateway
COPY --from=builder /opt/ev-gateway/.venv /opt/ev-gateway/.venv
ENV PATH=/opt/ev-gateway/.venv/bin:$PATH \
    GATEWAY_SINK__LOCAL__DATA_DIR=/var/lib/ev-gateway \
    GATEWAY_METRICS__HOST=0.0.0.0 \
    GATEWAY_HEALTH__HOST=0.0.0.0
WORKDIR /var/lib/ev-gateway
# Raw and parsed files, decode errors and dead letters: keep them off the container's layer.
VOLUME /var/lib/ev-gateway
USER 10001:10001

# Teltonika devices (TCP, Codec 8 / 8 Extended)
EXPOSE 5027
# GT06 devices (TCP)
EXPOSE 5023
# AIS-140 devices (TCP, ASCII)
EXPOSE 5024
# EVB1 devices (TCP)
EXPOSE 5100
# Prometheus metrics: GET /metrics
EXPOSE 9108
# NLB health checks: GET /healthz (alive), GET /readyz (taking traffic)
EXPOSE 8080

# Liveness only (/healthz is answered by the event loop itself): /readyz turns 503 while a sink
# is down, and restarting the container would not help that. Move the health port with
# GATEWAY_HEALTH__PORT, not in the TOML file, so this check follows it.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('GATEWAY_HEALTH__PORT', '8080') + '/healthz', timeout=4)"]

# The gateway drains on SIGTERM (a second one exits at once). It runs as PID 1 without an init:
# it installs its own handlers and starts no child processes to reap.
STOPSIGNAL SIGTERM
ENTRYPOINT ["gateway"]
CMD ["run"]
