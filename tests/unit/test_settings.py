"""Bad settings stop the process at start with one line that names the variable and the valid values."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import pytest

from app.settings import ServerSettings
from loadtest.harness.topology import PROJECT_ROOT
from mcp_cluster.settings import DEFAULT_ALLOWED_HOSTS, InstanceSettings, Preset, SettingsError

PRESET_CHOICES = "valid values: stateful-sse, stateful-json, stateless-sse, stateless-json"


def test_defaults_work_out_of_the_box():
    settings = InstanceSettings.from_env({})
    assert settings.preset is Preset.STATEFUL_SSE
    assert settings.allowed_hosts == DEFAULT_ALLOWED_HOSTS
    assert "http://localhost:*" in settings.allowed_origins
    assert ServerSettings.from_env({}).data_dir == PROJECT_ROOT / "data"
    assert settings.request_state_keys == ()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MCP_PRESET": "stateful"}, f"MCP_PRESET='stateful' is not valid; {PRESET_CHOICES}"),
        ({"MCP_ACCESS_LOG": "yes"}, "MCP_ACCESS_LOG='yes' is not valid; valid values: on, off"),
        ({"MCP_LISTEN_PORT": "http"}, "MCP_LISTEN_PORT='http' is not a whole number; valid values: 1..65535"),
        ({"MCP_INSTANCE_ID": "App_1"}, "MCP_INSTANCE_ID='App_1' is not valid"),
        ({"MCP_ALLOWED_HOSTS": "*"}, "MCP_ALLOWED_HOSTS='*' has the entry '*'"),
        ({"MCP_ALLOWED_HOSTS": ","}, "MCP_ALLOWED_HOSTS=',' lists no host"),
        ({"MCP_REDIS_URL": "localhost:6379"}, "MCP_REDIS_URL='localhost:6379' is not a Redis URL"),
        ({"MCP_SESSION_IDLE_TIMEOUT": "-1"}, "MCP_SESSION_IDLE_TIMEOUT='-1' must be > 0 seconds"),
        ({"MCP_LOG_LEVEL": "LOUD"}, "MCP_LOG_LEVEL='LOUD' is not valid; valid values: DEBUG, INFO, WARNING, ERROR"),
    ],
)
def test_malformed_values_are_refused_with_the_valid_ones(env, message):
    with pytest.raises(SettingsError) as refused:
        InstanceSettings.from_env(env)
    assert str(refused.value).startswith(message)
    assert "\n" not in str(refused.value)


def test_the_demo_refuses_a_data_directory_that_does_not_exist():
    with pytest.raises(SettingsError, match="MCP_DATA_DIR='/no/such/dir' is not an existing directory"):
        ServerSettings.from_env({"MCP_DATA_DIR": "/no/such/dir"})


def test_settings_given_in_code_are_checked_like_the_environment():
    settings = InstanceSettings("a1", session_store="redis", redis_url="redis://r:6379/0", redis_password="pw")
    assert settings.session_store.value == "redis"
    with pytest.raises(SettingsError, match="names a Redis beyond this host"):
        InstanceSettings("a1", session_store="redis", redis_url="redis://r:6379/0")
    with pytest.raises(SettingsError, match="needs MCP_REDIS_URL"):
        InstanceSettings("a1", session_store="redis")


def test_every_bad_value_is_reported_at_once():
    with pytest.raises(SettingsError) as refused:
        InstanceSettings.from_env({"MCP_PRESET": "x", "MCP_WORKERS": "0"})
    assert "MCP_PRESET='x'" in str(refused.value) and "MCP_WORKERS='0' is out of range" in str(refused.value)


def test_request_state_keys_must_be_long_and_are_never_echoed():
    short = "ab" * 16
    with pytest.raises(SettingsError) as refused:
        InstanceSettings.from_env({"MCP_REQUEST_STATE_KEYS": short})
    assert str(refused.value) == (
        "MCP_REQUEST_STATE_KEYS=<hidden> has a key of 16 bytes; each key needs >= 32 bytes (64 hex digits)"
    )
    keys = InstanceSettings.from_env({"MCP_REQUEST_STATE_KEYS": f"{'11' * 32}, {'22' * 32}"}).request_state_keys
    assert keys == (b"\x11" * 32, b"\x22" * 32)
    with pytest.raises(SettingsError, match="=<hidden> has the same key twice"):
        InstanceSettings.from_env({"MCP_REQUEST_STATE_KEYS": f"{'11' * 32},{'11' * 32}"})


def test_request_state_keys_come_from_a_file_never_with_the_variable_too(tmp_path):
    """In a file, the keys stay out of the process's environment (docker inspect, /proc/<pid>/environ)."""
    held = tmp_path / "request-state-keys"
    held.write_text(f"{'33' * 32},{'44' * 32}\n")
    assert InstanceSettings.from_env({"MCP_REQUEST_STATE_KEYS_FILE": str(held)}).request_state_keys == (
        b"\x33" * 32,
        b"\x44" * 32,
    )
    with pytest.raises(SettingsError, match="MCP_REQUEST_STATE_KEYS and MCP_REQUEST_STATE_KEYS_FILE are both set"):
        InstanceSettings.from_env({"MCP_REQUEST_STATE_KEYS": "55" * 32, "MCP_REQUEST_STATE_KEYS_FILE": str(held)})
    with pytest.raises(SettingsError, match="MCP_REQUEST_STATE_KEYS_FILE=<hidden> cannot be read"):
        InstanceSettings.from_env({"MCP_REQUEST_STATE_KEYS_FILE": str(tmp_path / "missing")})


def test_several_workers_with_in_memory_sessions_are_refused():
    with pytest.raises(SettingsError, match="would give each worker its own session table"):
        InstanceSettings.from_env({"MCP_WORKERS": "2"})
    assert InstanceSettings.from_env({"MCP_WORKERS": "2", "MCP_PRESET": "stateless-json"}).workers == 2


def test_the_redis_store_needs_a_stateful_preset_and_a_redis():
    redis = {"MCP_REDIS_URL": "redis://127.0.0.1:6379/0"}
    assert InstanceSettings.from_env({"MCP_SESSION_STORE": "redis", **redis}).session_store.value == "redis"
    with pytest.raises(SettingsError, match="MCP_PRESET='stateless-sse' has none"):
        InstanceSettings.from_env({"MCP_SESSION_STORE": "redis", "MCP_PRESET": "stateless-sse", **redis})
    with pytest.raises(SettingsError, match="MCP_SESSION_STORE='redis' needs MCP_REDIS_URL"):
        InstanceSettings.from_env({"MCP_SESSION_STORE": "redis"})
    assert InstanceSettings.from_env({}).redis_url is None  # no Redis: every instance keeps its own state


def test_the_internal_url_names_this_instance_for_the_others():
    assert InstanceSettings.from_env({"MCP_LISTEN_PORT": "8101"}).internal_url == "http://127.0.0.1:8101"
    behind = {"MCP_LISTEN_HOST": "0.0.0.0", "MCP_FRONT_DOOR": "127.0.0.1"}  # as compose: nginx on loopback
    given = InstanceSettings.from_env({**behind, "MCP_ADVERTISE_URL": "http://app1:8000/"})
    assert given.internal_url == "http://app1:8000"
    with pytest.raises(SettingsError, match="MCP_ADVERTISE_URL='app1:8000' is not a base URL"):
        InstanceSettings.from_env({"MCP_ADVERTISE_URL": "app1:8000"})


REDIS_STORE = {"MCP_SESSION_STORE": "redis", "MCP_REDIS_URL": "redis://127.0.0.1:6379/0"}


def test_beyond_loopback_an_instance_starts_only_with_authentication_or_an_opt_out_naming_the_risk():
    beyond = ({"MCP_LISTEN_HOST": "0.0.0.0"}, {"MCP_FRONT_DOOR": "0.0.0.0"}, {"MCP_FRONT_DOOR": "mcp.example.com"})
    for exposed in beyond:
        with pytest.raises(SettingsError, match="anyone who reaches it could open sessions and call every tool"):
            InstanceSettings.from_env(exposed)
        opted_out = InstanceSettings.from_env({**exposed, "MCP_ANYONE_MAY_CALL_EVERY_TOOL": "yes"})
        assert not opted_out.auth_enabled
    with pytest.raises(SettingsError, match="MCP_ANYONE_MAY_CALL_EVERY_TOOL='true' is not valid; valid values: yes"):
        InstanceSettings.from_env({"MCP_LISTEN_HOST": "0.0.0.0", "MCP_ANYONE_MAY_CALL_EVERY_TOOL": "true"})
    assert not InstanceSettings.from_env({"MCP_LISTEN_HOST": "0.0.0.0", "MCP_FRONT_DOOR": "localhost"}).auth_enabled


def test_forwarded_requests_get_a_port_of_their_own():
    assert InstanceSettings.from_env(REDIS_STORE).forward_ports is None  # the public port, as on one host
    assert InstanceSettings.from_env({**REDIS_STORE, "MCP_WORKERS": "2"}).forward_ports == (0,)  # the kernel's
    workers = InstanceSettings.from_env({**REDIS_STORE, "MCP_FORWARD_PORT": "8001", "MCP_WORKERS": "3"})
    assert workers.forward_ports == (8001, 8002, 8003)
    peer = {"MCP_FORWARD_HOST": "app1-peer", "MCP_FORWARD_PORT": "8001", "MCP_PEER_URLS": "http://app1-peer:*"}
    given = InstanceSettings.from_env({**REDIS_STORE, **peer, "MCP_LISTEN_HOST": "0.0.0.0", "MCP_FRONT_DOOR": "::1"})
    assert (given.internal_url, given.forward_address) == ("http://app1-peer:8001", "app1-peer")
    assert InstanceSettings.from_env({"MCP_FORWARD_PORT": "8001"}).forward_ports is None  # memory: none forwarded


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MCP_FORWARD_PORT": "8000"}, "MCP_FORWARD_PORT=8000 with MCP_WORKERS=1 takes ports 8000..8000"),
        ({"MCP_FORWARD_PORT": "65535", "MCP_WORKERS": "2"}, "takes ports 65535..65536, which must lie below 65536"),
        (
            {"MCP_FORWARD_PORT": "8001", "MCP_ADVERTISE_URL": "http://127.0.0.1:8000"},
            "MCP_ADVERTISE_URL names port 8000 and MCP_FORWARD_PORT is 8001",
        ),
        ({"MCP_FORWARD_HOST": "app 1"}, "MCP_FORWARD_HOST='app 1' is not an IP address or host name"),
    ],
)
def test_forwarding_settings_that_cannot_work_are_refused(env, message):
    with pytest.raises(SettingsError, match=message):
        InstanceSettings.from_env({**REDIS_STORE, **env})


def run_app(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "app"],
        cwd=PROJECT_ROOT,
        env={**os.environ, "MCP_LISTEN_PORT": "1", **env},  # port 1 would fail if the checks let it through
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_the_process_stops_at_start_with_one_line():
    result = run_app({"MCP_PRESET": "stateless"})
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == (
        f"mcp-scale-lab: configuration error: MCP_PRESET='stateless' is not valid; {PRESET_CHOICES}\n"
    )


def test_nginx_launcher_refuses_an_unknown_policy(tmp_path):
    result = subprocess.run(
        ["sh", str(PROJECT_ROOT / "nginx" / "run-nginx.sh")],
        env={**os.environ, "LB_POLICY": "least-conn", "NGINX_SITE_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert (
        result.stderr
        == "run-nginx: LB_POLICY='least-conn' is not valid; valid values: round-robin, ip-hash, session, session-dns\n"
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"MCP_REDIS_URL": "redis://mcp:hunter2@redis:6379/0"},
            "MCP_REDIS_URL='redis://mcp:<hidden>@redis:6379/0' holds a password, which the environment shows",
        ),
        (
            {"MCP_REDIS_URL": "redis://mcp@redis:6379/0"},
            "MCP_REDIS_URL names a Redis beyond this host (redis) and no password",
        ),
        (
            {"MCP_REDIS_URL": "redis+sentinel://mcp@s1:26379/mcp/0"},
            "MCP_REDIS_URL names a Redis beyond this host (s1) and no password",
        ),
        ({"MCP_REDIS_PASSWORD_FILE": "/no/such/file"}, "MCP_REDIS_PASSWORD_FILE='/no/such/file' cannot be read"),
        ({"MCP_PEER_URLS": "app1:8000"}, "MCP_PEER_URLS='app1:8000' has the entry 'app1:8000'; valid values"),
        (
            {"MCP_SESSION_STORE": "redis", "MCP_REDIS_URL": "redis://127.0.0.1:6379/0", "MCP_PEER_URLS": "http://a*:1"},
            "this instance's own URL http://127.0.0.1:8000 is not in MCP_PEER_URLS (http://a*:1)",
        ),
    ],
)
def test_redis_without_a_password_or_forwarding_beyond_the_peers_is_refused(env, message):
    with pytest.raises(SettingsError) as refused:
        InstanceSettings.from_env(env)
    assert str(refused.value).startswith(message)
    assert "hunter2" not in str(refused.value)


def test_the_redis_password_comes_from_its_file_and_never_shows(tmp_path):
    secret = tmp_path / "redis-password"
    secret.write_text("s3cret-password\n")
    env = {"MCP_REDIS_URL": "redis://mcp@redis:6379/0", "MCP_REDIS_PASSWORD_FILE": str(secret)}
    settings = InstanceSettings.from_env(env)
    assert settings.redis_password == "s3cret-password"
    assert "s3cret" not in repr(settings)
    secret.write_text("\n")
    with pytest.raises(SettingsError, match=r"MCP_REDIS_PASSWORD_FILE=.* holds no password"):
        InstanceSettings.from_env(env)


def test_peer_urls_match_with_wildcards_and_nothing_else():
    settings = InstanceSettings.from_env({"MCP_PEER_URLS": "http://app1:*, http://app-*.mcp.svc:8000"})
    assert settings.is_peer("http://app1:8000") and settings.is_peer("http://app1:41234")
    assert settings.is_peer("http://app-0.mcp.svc:8000")
    assert not settings.is_peer("http://evil:8000") and not settings.is_peer("http://app10:8000")
    assert not settings.is_peer("https://app1:8000") and not settings.is_peer("http://app-0.mcp.svc:8001")
    # A wildcard never takes in a user, a path or another host around what the pattern names:
    assert not settings.is_peer("http://app-0@evil.example:80/.mcp.svc:8000")
    assert not settings.is_peer("http://app-evil.example/x.mcp.svc:8000")
    assert not settings.is_peer("http://app1:80@evil.example")


@pytest.mark.parametrize(
    ("env", "waits_for"),
    [
        ({}, 0),
        ({"MCP_REDIS_URL": "redis://127.0.0.1:6379/0"}, 0),
        ({"MCP_REDIS_URL": "redis+sentinel://mcp@127.0.0.1:26379/mcp/0"}, 1),  # a replica is there: wait for it
        ({"MCP_REDIS_URL": "redis+sentinel://mcp@127.0.0.1:26379/mcp/0", "MCP_REDIS_WAIT_REPLICAS": "0"}, 0),
        ({"MCP_REDIS_URL": "redis://127.0.0.1:6379/0", "MCP_REDIS_WAIT_REPLICAS": "2"}, 2),
    ],
)
def test_writes_wait_for_a_replica_by_default_through_sentinels(env, waits_for):
    assert InstanceSettings.from_env(env).redis_wait_replicas == waits_for
    assert InstanceSettings.from_env({**env, "MCP_REDIS_RIDE_THROUGH": "3"}).redis_ride_through == 3.0


def test_the_configuration_page_shows_every_setting_as_the_code_declares_it():
    """docs/configuration.md's table is `mcp-cluster settings`, generated from the one place each is declared."""
    printed = subprocess.run(
        [sys.executable, "-m", "mcp_cluster", "settings"], capture_output=True, text=True, check=True
    ).stdout
    page = (PROJECT_ROOT / "docs" / "configuration.md").read_text()
    shown = page.split("<!-- generated: mcp-cluster settings -->\n", 1)[1].split("<!-- end generated -->", 1)[0]
    assert shown == printed == InstanceSettings.table()
    assert printed.count("\n| `MCP_") == len(dataclasses.fields(InstanceSettings))
