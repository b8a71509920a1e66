"""docker-compose.yml states each thing once, and every profile still gets exactly the services it had
(tests/data/compose-services.json: `docker compose config` of the file before it was folded, in the
default environment, plus what changed on purpose since: the apps' stop_grace_period and
MCP_REDIS_WAIT_REPLICAS, Redis's append-only file and its volume, the redis-ha profile, Redis locked
down (redis-init, its ACL users and password, the backend network, maxmemory), every container
hardened, nginx's per-client bounds, the auth settings and the `auth` profile's local issuer, the forwarding
port on the backend network, MCP_ACCESS_LOG, the metrics ports and nginx's stub_status, the `monitoring`
profile's Prometheus, the apps' URL passed to Redis, which writes only with a replica when it names Sentinels).
Compose 1.29
reads the same file: tests/compose/test_compose_v1.py runs a profile with it."""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest

from loadtest.harness.compose import V2
from loadtest.harness.topology import PRESETS, PROJECT_ROOT
from mcp_cluster.settings import InstanceSettings, SettingsError
from tests.utils.clients import require_docker

SNAPSHOT = PROJECT_ROOT / "tests" / "data" / "compose-services.json"
PROFILES = (*PRESETS, "loadtest", "redis-ha", "auth", "monitoring")
# The compose file's own variables: a caller's value would change the services.
VARIABLES = ("LB_POLICY", "SESSION_STORE", "NGINX_PORT", "NGINX_BIND", "LOCUST_PORT", "LOCUST_BIND", "MCP_WORKERS")
VARIABLES += (
    "MCP_ALLOWED_HOSTS",
    "MCP_REQUEST_STATE_KEYS",
    "MCP_LOG_LEVEL",
    "MCP_ACCESS_LOG",
    "PYTHON_IMAGE",
    "NGINX_IMAGE",
    "REDIS_IMAGE",
    "REDIS_URL",
    "REDIS_WAIT_REPLICAS",
    "REDIS_MAXMEMORY",
    "NGINX_CONNECTIONS_PER_CLIENT",
    "NGINX_REQUESTS_PER_CLIENT",
    "NGINX_UPLOADS_PER_CLIENT",
    "NGINX_UPLOADS",
    "NGINX_TRUSTED_PROXIES",
    "MCP_AUTH_JWKS",
    "MCP_ANYONE_MAY_CALL_EVERY_TOOL",
    "MCP_AUTH_ISSUER",
    "MCP_AUTH_RESOURCE",
    "MCP_AUTH_SCOPES",
    "ISSUER_BIND",
    "ISSUER_PORT",
    "PROMETHEUS_IMAGE",
    "PROMETHEUS_BIND",
    "PROMETHEUS_PORT",
)


def config(profile: str, **variables: str) -> dict:
    """Every service of `profile` as compose resolves it, with only `variables` of the compose file's own set."""
    env = {k: v for k, v in os.environ.items() if k not in VARIABLES and not k.startswith("COMPOSE_")} | variables
    done = subprocess.run(
        [*V2, "--profile", profile, "config", "--format", "json"], cwd=PROJECT_ROOT, env=env, capture_output=True
    )
    assert done.returncode == 0, done.stderr.decode()
    services = json.loads(done.stdout)["services"]
    return json.loads(json.dumps(services).replace(json.dumps(str(PROJECT_ROOT))[:-1], '"<project>'))


@pytest.mark.parametrize("profile", PROFILES)
def test_every_profile_gets_the_services_it_had(profile):
    require_docker("docker compose config", V2)
    assert config(profile) == json.loads(SNAPSHOT.read_text())[profile]


def test_every_service_of_every_profile_is_hardened():
    """Read-only root, no capabilities (redis-init adds back CHOWN only), no privilege gained through exec."""
    for profile, services in json.loads(SNAPSHOT.read_text()).items():
        for name, service in services.items():
            assert service["read_only"] and service["cap_drop"] == ["ALL"], (profile, name)
            assert service.get("cap_add", []) in ([], ["CHOWN"]), (profile, name)
            assert "no-new-privileges:true" in service["security_opt"], (profile, name)


def test_every_app_forwards_on_a_name_only_the_backend_network_knows():
    """MCP_FORWARD_HOST is the app's alias on `backend` and on no other network, and the peers list it."""
    from fnmatch import fnmatchcase

    checked = set()
    for profile, services in json.loads(SNAPSHOT.read_text()).items():
        for name, service in services.items():
            env = service.get("environment", {})
            if not name.startswith("app"):
                continue
            checked.add(name)
            host, networks = env["MCP_FORWARD_HOST"], service["networks"]
            assert networks["backend"]["aliases"] == [host], (profile, name)
            assert all(host not in (net or {}).get("aliases", []) for key, net in networks.items() if key != "backend")
            url = f"http://{host}:{env['MCP_FORWARD_PORT']}"
            assert any(fnmatchcase(url, pattern) for pattern in env["MCP_PEER_URLS"].split(",")), (profile, name)
    assert len(checked) == 3 * len(PRESETS), checked


def test_every_base_image_is_pinned_to_a_version():
    """A floating tag (redis:7-alpine) changes what runs under the same name; each base image names a release."""
    pinned = re.compile(r"^[\w./-]+:v?\d+\.\d+\.\d+([-.\w]*)$")
    images = {
        service["image"]
        for services in json.loads(SNAPSHOT.read_text()).values()
        for service in services.values()
        if not service["image"].startswith("mcp-scale-lab")
    }
    for dockerfile in ("Dockerfile", "loadtest/Dockerfile", "issuer/Dockerfile"):
        images |= set(re.findall(r"^ARG PYTHON_IMAGE=(\S+)$", (PROJECT_ROOT / dockerfile).read_text(), re.M))
    for manifest in (PROJECT_ROOT / "deploy" / "kubernetes").glob("*.yaml"):
        images |= set(re.findall(r"^\s+image: (\S+)$", manifest.read_text(), re.M)) - {"mcp-scale-lab-app"}
    assert len(images) >= 4 and all(pinned.match(image) for image in images), sorted(images)


def test_published_beyond_loopback_the_apps_refuse_to_start_without_authentication(tmp_path):
    """NGINX_BIND=0.0.0.0 reaches the apps as MCP_FRONT_DOOR: without auth or the opt-out they stop at start."""
    require_docker("docker compose config", V2)
    app = {**config("stateful-sse", NGINX_BIND="0.0.0.0")["app1-stateful-sse"]["environment"]}
    (tmp_path / "redis-password").write_text("the mcp user's password")  # the container's secret is not here
    app["MCP_REDIS_PASSWORD_FILE"] = str(tmp_path / "redis-password")
    env = {name: value for name, value in app.items() if value}
    with pytest.raises(SettingsError, match=r"beyond this host \(MCP_FRONT_DOOR=0.0.0.0\)"):
        InstanceSettings.from_env(env)
    assert not InstanceSettings.from_env({**env, "MCP_ANYONE_MAY_CALL_EVERY_TOOL": "yes"}).auth_enabled
