"""deploy/kubernetes/ with no cluster: what `kubectl apply -k` would apply validates against the Kubernetes
API schemas (kubernetes-validate, strict), and the objects agree with each other and with the app: every
reference resolves, every pod is restricted, the drain fits the grace period, the app's settings load."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest

from loadtest.harness.topology import PROJECT_ROOT
from mcp_cluster.settings import InstanceSettings
from tests.utils.docs import blocks
from tests.utils.kustomize import containers, pod_specs, render

KUBERNETES_VERSION = "1.34.0"  # the oldest release still maintained upstream (2026-12)
DEPLOY = PROJECT_ROOT / "deploy" / "kubernetes"
USER_SECRETS = {"mcp-redis"}  # made by the operator (docs/kubernetes.md), never committed
USER_CONFIG_MAPS = {"mcp-jwks"}  # made by the operator (docs/kubernetes.md): the identity provider's keys
CLOSE_CONNECTIONS_SECONDS = 3  # after the drain, an app waits this long for nginx to close its connections


@pytest.fixture(scope="module")
def objects() -> list[dict]:
    return render(DEPLOY)


def by_kind(objects: list[dict], kind: str) -> dict[str, dict]:
    return {obj["metadata"]["name"]: obj for obj in objects if obj["kind"] == kind}


def workload(objects: list[dict], name: str) -> dict:
    return next(
        obj for obj in objects if obj["kind"] in ("StatefulSet", "Deployment") and obj["metadata"]["name"] == name
    )


def test_every_object_validates_against_the_kubernetes_schemas(objects):
    assert {obj["kind"] for obj in objects} >= {
        "Namespace", "StatefulSet", "Deployment", "Service", "ConfigMap", "PodDisruptionBudget",
        "HorizontalPodAutoscaler", "NetworkPolicy",
    }  # fmt: skip
    for obj in objects:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_a_misspelt_field_is_caught(objects):
    broken = copy.deepcopy(workload(objects, "mcp"))
    container = broken["spec"]["template"]["spec"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError, match="readinesProbe"):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_every_reference_resolves_and_no_secret_is_committed(objects):
    config_maps = by_kind(objects, "ConfigMap")
    assert not by_kind(objects, "Secret")
    for obj in objects:
        for spec in pod_specs(obj):
            for volume in spec.get("volumes", []):
                if volume.get("configMap", {}).get("name") in USER_CONFIG_MAPS:
                    continue
                if "configMap" in volume:
                    data = config_maps[volume["configMap"]["name"]]["data"]
                    assert {item["key"] for item in volume["configMap"].get("items", [])} <= set(data)
                if "secret" in volume:
                    assert volume["secret"]["secretName"] in USER_SECRETS
            for container in spec["containers"]:
                for source in container.get("envFrom", []):
                    assert source["configMapRef"]["name"] in config_maps


def test_nginx_runs_the_files_of_nginx_as_they_are(objects):
    deployment = workload(objects, "nginx")
    volume = next(v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "config")
    data = by_kind(objects, "ConfigMap")[volume["configMap"]["name"]]["data"]
    for item in volume["configMap"]["items"]:
        assert data[item["key"]] == (PROJECT_ROOT / "nginx" / item["path"]).read_text(), item["path"]
    env = {e["name"]: e.get("value") for e in containers(deployment)[0]["env"]}
    assert env["LB_POLICY"] == "session-dns" and env["NGINX_DNS_STATEFULSET"] == "mcp"


def test_every_service_selects_pods_on_ports_they_have(objects):
    for service in by_kind(objects, "Service").values():
        selected = [
            obj
            for obj in objects
            if pod_specs(obj)
            and service["spec"]["selector"].items() <= obj["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert selected, service["metadata"]["name"]
        ports = {port["name"] for obj in selected for c in containers(obj) for port in c.get("ports", [])}
        assert {port["targetPort"] for port in service["spec"]["ports"]} <= ports, service["metadata"]["name"]
    assert workload(objects, "mcp")["spec"]["serviceName"] == "mcp"
    assert by_kind(objects, "Service")["mcp"]["spec"]["clusterIP"] == "None"  # a DNS name per pod


def test_every_pod_meets_the_restricted_pod_security_standard(objects):
    namespace = by_kind(objects, "Namespace")["mcp"]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for obj in objects:
        for spec in pod_specs(obj):
            assert spec["securityContext"]["runAsNonRoot"] is True
            assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
            assert spec["automountServiceAccountToken"] is False
        for container in containers(obj):
            assert container["securityContext"] == {
                "allowPrivilegeEscalation": False,
                "readOnlyRootFilesystem": True,
                "capabilities": {"drop": ["ALL"]},
            }, container["name"]
            assert container["resources"]["limits"]["memory"]


def test_the_grace_period_holds_the_pre_stop_pause_and_the_drain(objects):
    app = workload(objects, "mcp")
    spec = app["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    settings = by_kind(objects, "ConfigMap")[container["envFrom"][0]["configMapRef"]["name"]]["data"]
    pause = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    drain = float(settings["MCP_DRAIN_SECONDS"])
    assert spec["terminationGracePeriodSeconds"] > pause + drain + CLOSE_CONNECTIONS_SECONDS
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_the_app_pods_settings_load_as_the_pod_would_get_them(objects, tmp_path):
    app = workload(objects, "mcp")
    (container,) = app["spec"]["template"]["spec"]["containers"]
    password = tmp_path / "redis-password"
    password.write_text("a password the operator made")
    downward = {"POD_NAME": "mcp-2", "POD_NAMESPACE": "mcp", "POD_IP": "10.1.2.3"}
    env = dict(by_kind(objects, "ConfigMap")[container["envFrom"][0]["configMapRef"]["name"]]["data"])
    for variable in container["env"]:
        value = variable.get("value", downward.get(variable["name"]))
        env[variable["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env[m[1]], value)  # Kubernetes' $(VAR)
    env["MCP_REDIS_PASSWORD_FILE"] = str(password)
    (mount,) = (m for m in container["volumeMounts"] if m["name"] == "auth-keys")
    assert env["MCP_AUTH_JWKS"] == f"{mount['mountPath']}/jwks.json"  # the ConfigMap mcp-jwks's key, mounted
    env["MCP_AUTH_JWKS"] = str(jwks_file(tmp_path))
    settings = InstanceSettings.from_env(env)
    assert settings.auth_enabled  # beyond loopback: on, or refused without MCP_ANYONE_MAY_CALL_EVERY_TOOL=yes
    assert settings.instance_id == "mcp-2"  # the session ids nginx routes start with the pod's name
    assert settings.internal_url == "http://mcp-2.mcp.mcp.svc.cluster.local:8001"
    assert settings.metrics_ports == (9000,) and settings.session_store.value == "redis"


def test_network_policies_deny_all_but_the_paths_the_stack_uses(objects):
    policies = by_kind(objects, "NetworkPolicy")
    assert policies["default-deny"]["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    allowed = {
        (name, port["port"])
        for name, policy in policies.items()
        for rule in policy["spec"].get("ingress", [])
        for port in rule.get("ports", [])
    }
    assert allowed == {("nginx", 8080), ("nginx", 8081), ("mcp", 8000), ("mcp", 8001), ("mcp", 9000), ("redis", 6379)}
    egress = {
        (name, tuple(sorted(rule["to"][0].get("podSelector", {}).get("matchLabels", {}).items())), port["port"])
        for name, policy in policies.items()
        for rule in policy["spec"].get("egress", [])
        for port in rule.get("ports", [])
    }
    dns = (("k8s-app", "kube-dns"),)
    to = (("app.kubernetes.io/name", "mcp"),), (("app.kubernetes.io/name", "redis"),)
    assert egress == {
        ("nginx", to[0], 8000), ("nginx", dns, 53),  # the pods, by the names it resolves
        ("mcp", to[0], 8001), ("mcp", to[1], 6379), ("mcp", dns, 53),  # the owners' forwarding ports, Redis
    }  # fmt: skip
    assert policies["redis"]["spec"]["egress"] == []
    for name in ("nginx", "mcp", "redis"):
        exposed = {p["containerPort"] for c in containers(workload(objects, name)) for p in c["ports"]}
        assert {port for policy, port in allowed if policy == name} <= exposed


def kubectl_shell(tmp_path) -> dict[str, str]:
    """A shell whose `kubectl` is the stand-in (tests/utils/kubectl.py), logging to tmp_path/kubectl.log."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "kubectl").write_text(f'#!/bin/sh\nexec {sys.executable} -m tests.utils.kubectl "$@"\n')
    (bin_dir / "kubectl").chmod(0o755)
    return {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "PYTHONPATH": str(PROJECT_ROOT),
        "KUBECTL_LOG": str(tmp_path / "kubectl.log"),
        "KUBECTL_MANIFESTS": str(DEPLOY),
        "ISSUER_JWKS": str(jwks_file(tmp_path)),
    }


def jwks_file(folder: Path) -> Path:
    """An identity provider's JWKS, as an operator saves it (one public Ed25519 key)."""
    path = folder / "issuer-jwks.json"
    key = {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid": "k1"}
    path.write_text(json.dumps({"keys": [key]}))
    return path


def test_the_deploy_commands_of_the_docs_name_what_the_manifests_hold(tmp_path):
    env = kubectl_shell(tmp_path)
    command = blocks()["kubernetes-deploy"][0]  # docs/kubernetes.md, as written
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", command], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert [line.split()[:3] for line in (tmp_path / "kubectl.log").read_text().splitlines()] == [
        ["apply", "-k", "deploy/kubernetes"],
        ["-n", "mcp", "create"],
        ["-n", "mcp", "create"],
        ["-n", "mcp", "rollout"],
        ["-n", "mcp", "port-forward"],
    ]
    wrong = (
        "kubectl -n mcp create secret generic redis-password --from-literal=password=0123456789abcdef0123456789abcdef"
    )
    refused = subprocess.run(["bash", "-c", wrong], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True)
    assert refused.returncode == 1 and "mount secret redis-password with keys []" in refused.stderr
    mismatched = (
        "kubectl -n mcp create secret generic mcp-redis --from-literal=password=0123456789abcdef0123456789abcdef"
        " --from-literal=password-sha256=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    )
    refused = subprocess.run(["bash", "-c", mismatched], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True)
    assert refused.returncode == 1 and "mount secret mcp-redis" in refused.stderr


def test_the_redis_pod_holds_the_instances_password_only_as_its_hash(objects):
    """The instances' pods mount the `mcp` user's password; Redis mounts only its SHA-256 (redis/run-redis.sh)."""
    mounted = {
        name: {
            item["key"]
            for volume in pod_specs(workload(objects, name))[0]["volumes"]
            if "secret" in volume
            for item in volume["secret"]["items"]
        }
        for name in ("mcp", "redis")
    }
    assert mounted == {"mcp": {"password"}, "redis": {"password-sha256"}}


def test_app_pods_that_reach_redis_through_sentinels_wait_for_a_replica(objects, tmp_path):
    """docs/kubernetes.md#redis: pointed at Sentinels, the app pods wait for one replica with no other setting."""
    app = workload(objects, "mcp")
    (container,) = app["spec"]["template"]["spec"]["containers"]
    password = tmp_path / "redis-password"
    password.write_text("a password the operator made")
    env = dict(by_kind(objects, "ConfigMap")[container["envFrom"][0]["configMapRef"]["name"]]["data"])
    env |= {
        "MCP_INSTANCE_ID": "mcp-0",
        "MCP_REDIS_PASSWORD_FILE": str(password),
        "MCP_AUTH_JWKS": str(jwks_file(tmp_path)),
    }
    assert InstanceSettings.from_env(env).redis_wait_replicas == 0  # one Redis
    sentinels = "redis+sentinel://mcp@redis-sentinel:26379/mymaster/0"
    assert InstanceSettings.from_env(env | {"MCP_REDIS_URL": sentinels}).redis_wait_replicas == 1


def test_the_docs_render_the_manifests_with_the_real_kubectl():
    """docs/kubernetes.md's command that needs no cluster, as written, with the dev venv's kubectl on PATH."""
    command = blocks()["kubernetes-render"][0]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", command], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(len(render(DEPLOY))) == "18"
