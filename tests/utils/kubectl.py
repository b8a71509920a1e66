"""A stand-in `kubectl`, only for what a cluster would answer (no cluster runs here): the commands
docs/kubernetes.md gives, each checked against what the real kubectl renders deploy/kubernetes/ to. What
needs no cluster is the real kubectl's work: `kustomize` renders the manifests, and `create ... --dry-run=client`
makes the Secret or ConfigMap a command would create. A wrong name, key or port fails with kubectl's own kind of
message. It applies nothing. Every call is appended to $KUBECTL_LOG.

    python -m tests.utils.kubectl apply -k deploy/kubernetes
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import kubernetes_validate

from tests.utils.kustomize import kubectl, pod_specs, render

KUBERNETES_VERSION = "1.34.0"


def main(argv: list[str]) -> int:
    with open(os.environ["KUBECTL_LOG"], "a") as log:
        log.write(" ".join(argv) + "\n")
    namespace = None
    if argv[:1] == ["-n"]:
        namespace, argv = argv[1], argv[2:]
    if argv[:2] == ["apply", "-k"]:
        for obj in render(Path(argv[2])):
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
            print(f"{obj['kind'].lower()}/{obj['metadata']['name']} created")
        return 0
    objects = render(Path(os.environ["KUBECTL_MANIFESTS"]))
    namespaced = {(o["kind"], o["metadata"]["name"]): o for o in objects if o["metadata"].get("namespace") == namespace}
    if argv[:3] == ["create", "secret", "generic"]:
        return _create_secret(argv[3], argv[4:], objects, namespace)
    if argv[:2] == ["create", "configmap"]:
        return _create_configmap(argv[2], argv[3:], objects, namespace)
    if argv[:2] == ["rollout", "status"]:
        kind, _, name = argv[2].partition("/")
        return _exists(namespaced, {"statefulset": "StatefulSet", "deployment": "Deployment"}[kind], name)
    if argv[:1] == ["port-forward"]:
        kind, _, name = argv[1].partition("/")
        service = namespaced.get(("Service", name))
        remote = int(argv[2].partition(":")[2])
        if kind != "service" or service is None or remote not in {p["port"] for p in service["spec"]["ports"]}:
            print(f'error: no service "{name}" with port {remote} in namespace {namespace}', file=sys.stderr)
            return 1
        print(f"Forwarding from 127.0.0.1:{argv[2].partition(':')[0]} -> {remote}")
        return 0
    print(f"kubectl stand-in: {' '.join(argv)} is not one of the commands docs/kubernetes.md gives", file=sys.stderr)
    return 1


def _create_configmap(name: str, args: list[str], objects: list[dict], namespace: str | None) -> int:
    """The ConfigMap must be one the pods of `namespace` mount, with the keys they read, each a JWKS (the only
    ConfigMap docs/kubernetes.md has you make)."""
    made = _dry_run(["create", "configmap", name, *args], namespace)
    if made is None:
        return 1
    given = made.get("data", {})
    wanted = _mounted_keys(objects, namespace, "configMap", name)
    if not wanted or set(given) != wanted or not all(_is_jwks(text) for text in given.values()):
        print(f"error: the pods mount configmap {name} with keys {sorted(wanted)} (each a JWKS file)", file=sys.stderr)
        return 1
    print(f"configmap/{name} created")
    return 0


def _dry_run(command: list[str], namespace: str | None) -> dict | None:
    """The object the real kubectl makes of `command`, client side (no cluster); None when it refuses it."""
    spaced = ["-n", namespace] if namespace else []
    made = subprocess.run(
        [kubectl(), *spaced, *command, "--dry-run=client", "-o", "json"], capture_output=True, text=True, timeout=30
    )
    if made.returncode != 0:
        print(made.stderr, end="", file=sys.stderr)
        return None
    return json.loads(made.stdout)


def _mounted_keys(objects: list[dict], namespace: str | None, source: str, name: str) -> set[str]:
    """The keys of the ConfigMap or Secret `name` (`source`: "configMap" or "secret") that pods of `namespace` mount."""
    field = "secretName" if source == "secret" else "name"
    return {
        item["key"]
        for obj in objects
        if obj["metadata"].get("namespace") == namespace
        for spec in pod_specs(obj)
        for volume in spec.get("volumes", [])
        if volume.get(source, {}).get(field) == name
        for item in volume[source]["items"]
    }


def _is_jwks(text: str) -> bool:
    try:
        keys = json.loads(text)["keys"]
    except (ValueError, KeyError, TypeError):
        return False
    return isinstance(keys, list) and bool(keys)


def _create_secret(name: str, args: list[str], objects: list[dict], namespace: str | None) -> int:
    """The Secret must be one the pods of `namespace` mount, with the keys they read."""
    made = _dry_run(["create", "secret", "generic", name, *args], namespace)
    if made is None:
        return 1
    given = {key: base64.b64decode(value).decode() for key, value in made.get("data", {}).items()}
    wanted = _mounted_keys(objects, namespace, "secret", name)
    hashes = {key: value for key, value in given.items() if key.endswith("-sha256")}
    hashed = all(
        hashlib.sha256(given.get(key.removesuffix("-sha256"), "").encode()).hexdigest() == value
        for key, value in hashes.items()
    )
    if not wanted or set(given) != wanted or not all(len(value) >= 32 for value in given.values()) or not hashed:
        print(f"error: the pods mount secret {name} with keys {sorted(wanted)}; given {sorted(given)}", file=sys.stderr)
        return 1
    print(f"secret/{name} created")
    return 0


def _exists(namespaced: dict, kind: str, name: str) -> int:
    if (kind, name) not in namespaced:
        print(f'Error from server (NotFound): {kind.lower()}s "{name}" not found', file=sys.stderr)
        return 1
    print(f'{kind.lower()} rolling update complete: "{name}"')
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
