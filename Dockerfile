# syntax=docker/dockerfile:1.7
# One image for every process: `docker run IMAGE gateway|streams|sink|topics|erase ...`.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/caliper
WORKDIR /src
# Dependencies first (cached until the pins change), then the packages themselves.
COPY constraints.txt pyproject.toml README.md ./
COPY caliper_pipeline/ caliper_pipeline/
COPY gateway/ gateway/
COPY schemas/ schemas/
COPY streams/ streams/
COPY sinks/ sinks/
RUN /opt/caliper/bin/pip install -c constraints.txt . \
 && /opt/caliper/bin/caliper-pipeline --help > /dev/null

# GET /healthz of whichever caliper-pipeline process runs in the container (gateway, sink or streams).
COPY --chmod=0755 <<'PY' /opt/caliper/bin/caliper-healthcheck
#!/opt/caliper/bin/python
import os
import sys
import urllib.request

PORTS = {"gateway": ("CALIPER_GATEWAY__PORT", "8080"), "sink": ("CALIPER_SINK__HTTP_PORT", "8124"),
         "streams": ("CALIPER_STREAMS__METRICS_PORT", "9108")}


def command() -> str:
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = [a.decode(errors="replace") for a in f.read().split(b"\0")]
        except OSError:
            continue
        if any(a.endswith("caliper-pipeline") for a in argv):
            for arg in argv:
                if arg in PORTS:
                    return arg
    return "gateway"


url = os.environ.get("CALIPER_HEALTHCHECK_URL")
if not url:
    variable, default = PORTS[command()]
    url = f"http://127.0.0.1:{os.environ.get(variable) or default}/healthz"
try:
    with urllib.request.urlopen(url, timeout=3) as response:
        sys.exit(0 if response.status == 200 else 1)
except Exception as error:
    print(f"{url}: {error}", file=sys.stderr)
    sys.exit(1)
PY

FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 caliper \
 && useradd --system --uid 10001 --gid caliper --home-dir /var/lib/caliper --create-home \
            --shell /usr/sbin/nologin caliper
COPY --from=build /opt/caliper /opt/caliper
# Containers listen on all interfaces (the sink's port is for the internal network only: compose does not publish
# it, its Kubernetes Service is a ClusterIP); state (clients file, chDB when no server is configured) under
# /var/lib/caliper.
ENV PATH=/opt/caliper/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CALIPER_GATEWAY__HOST=0.0.0.0 \
    CALIPER_SINK__HTTP_HOST=0.0.0.0 \
    CALIPER_STREAMS__METRICS_PORT=9108 \
    CALIPER_LOCAL__HOME=/var/lib/caliper \
    CALIPER_GATEWAY__CLIENTS_FILE=/var/lib/caliper/clients.json \
    CALIPER_CLICKHOUSE__DATA_PATH=/var/lib/caliper/chdb
WORKDIR /var/lib/caliper
USER 10001:10001
# gateway, sink (SQL, /metrics), streams (/metrics)
EXPOSE 8080 8124 9108
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 CMD ["caliper-healthcheck"]
ENTRYPOINT ["caliper-pipeline"]
CMD ["gateway"]
