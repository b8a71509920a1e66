"""mcp_cluster/serving.py's side ports in-process: bound by address, by name, or by network (this process's address
in it, as a Swarm task binds its hop's port on its backend network alone)."""

from __future__ import annotations

import errno
import socket

import pytest

from mcp_cluster import serving
from mcp_cluster.settings import InstanceSettings, SettingsError


def addresses(*found: str):
    """getaddrinfo as a container's /etc/hosts answers for its own name: one address per network."""
    return lambda host, port, type=0: [(socket.AF_INET, type, 6, "", (address, 0)) for address in found]


def test_a_network_binds_this_process_s_address_in_it(monkeypatch):
    monkeypatch.setattr(serving.socket, "getaddrinfo", addresses("10.0.3.58", "10.210.0.7"))
    assert serving.own_address("10.210.0.0/24")[4][0] == "10.210.0.7"
    assert serving.own_address("10.0.3.0/24")[4][0] == "10.0.3.58"


def test_a_network_this_process_has_no_address_in_is_refused_saying_what_it_has(monkeypatch):
    monkeypatch.setattr(serving.socket, "getaddrinfo", addresses("10.0.3.58"))
    with pytest.raises(OSError, match=r"no address in 10.210.0.0/24 \(its host name's: 10.0.3.58\)") as raised:
        serving.own_address("10.210.0.0/24")
    assert raised.value.errno == errno.EADDRNOTAVAIL


def test_a_loopback_network_binds_a_real_socket():
    sock = serving._bind_first_free("127.0.0.0/8", [0], "test") if _resolves_to_loopback() else None
    if sock is None:
        pytest.skip("this machine's host name does not resolve to a loopback address")
    with sock:
        assert sock.getsockname()[0].startswith("127.")


def _resolves_to_loopback() -> bool:
    return any(entry[4][0].startswith("127.") for entry in socket.getaddrinfo(socket.gethostname(), None))


@pytest.mark.parametrize("host", ["10.210.0.0/24", "app1-peer", "10.0.1.5"])
def test_the_forward_host_is_an_address_a_name_or_a_network(host):
    settings = InstanceSettings.from_env({"MCP_FORWARD_HOST": host, "MCP_METRICS_HOST": host})
    assert settings.forward_host == settings.metrics_host == host


def test_a_forward_host_that_is_none_of_them_is_refused():
    with pytest.raises(SettingsError, match="MCP_FORWARD_HOST"):
        InstanceSettings.from_env({"MCP_FORWARD_HOST": "10.0.0.0/33"})


def test_an_instance_bound_by_network_is_reached_by_its_host_name():
    settings = InstanceSettings.from_env({"MCP_FORWARD_HOST": "10.210.0.0/24", "MCP_FORWARD_PORT": "8001"})
    assert settings.internal_url == f"http://{socket.gethostname()}:8001"
