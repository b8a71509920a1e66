# The demo server (app/) on the library (src/mcp_cluster/). Official base by default; scripts/compose-images makes a local stand-in where no
# registry can be reached (docker-compose.yml passes it as PYTHON_IMAGE).
ARG PYTHON_IMAGE=python:3.12.8-slim-bookworm
FROM ${PYTHON_IMAGE}

# Spelled out: an imported stand-in image has no ENV of its own.
ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONPATH=/srv/mcp/src \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

WORKDIR /srv/mcp
COPY requirements.txt .
# Pinned wheels only: no compiler in the image. A stand-in image already has them (a no-op then).
RUN { [ -x /opt/venv/bin/python ] || python3 -m venv /opt/venv; } \
    && pip install --quiet --no-cache-dir --disable-pip-version-check -r requirements.txt \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin mcp \
    && mkdir /srv/mcp-auth && chown 10001:10001 /srv/mcp-auth  # the local issuer's JWKS volume (compose `auth`)
# The library from its source: its dependencies are the lock's, and installing it would fetch a build backend.
COPY src/ src/
COPY app/ app/
COPY data/ data/

USER 10001
ENV MCP_LISTEN_HOST=0.0.0.0 MCP_LISTEN_PORT=8000
EXPOSE 8000
# Short interval: compose starts nginx only once all three apps report healthy.
HEALTHCHECK --interval=2s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=2)"]
CMD ["python3", "-m", "app"]
