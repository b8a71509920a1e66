"""What `kubectl apply -k DIR` would apply, rendered with no kubectl (none can be installed here): the few
kustomize features deploy/kubernetes/ uses, and a clear error for any other, so a manifest never relies on
something this renderer would get wrong.

Supported: `resources` (files and directories with a kustomization of their own), `namespace`,
`configMapGenerator` (`files`, as `path` or `key=path`, and `literals`, with kustomize's content-hash name
suffix and the references to it rewritten), `images` (`name`, `newName`, `newTag`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import yaml

KEYS = {"apiVersion", "kind", "namespace", "resources", "configMapGenerator", "images"}
GENERATOR_KEYS = {"name", "files", "literals"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume", "StorageClass"}
POD_TEMPLATE_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}


class UnsupportedKustomization(ValueError):
    pass


def render(directory: Path) -> list[dict]:
    """Every object `kubectl apply -k directory` would apply."""
    objects, generated = _build(directory)
    renamed = {name: obj["metadata"]["name"] for name, obj in generated.items()}
    for obj in objects:
        for spec in pod_specs(obj):
            _rename_config_maps(spec, renamed)
    return objects


def _build(directory: Path) -> tuple[list[dict], dict[str, dict]]:
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    if unknown := set(kustomization) - KEYS:
        raise UnsupportedKustomization(f"{directory}: {sorted(unknown)} not supported by this renderer")
    objects: list[dict] = []
    generated: dict[str, dict] = {}
    for entry in kustomization.get("resources", []):
        path = directory / entry
        if path.is_dir():
            more, more_generated = _build(path)
            objects += more
            generated.update(more_generated)
        else:
            objects += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    for generator in kustomization.get("configMapGenerator", []):
        config_map = _config_map(directory, generator)
        generated[generator["name"]] = config_map
        objects.append(config_map)
    if (namespace := kustomization.get("namespace")) is not None:
        for obj in objects:
            if obj["kind"] not in CLUSTER_SCOPED:
                obj["metadata"]["namespace"] = namespace
    for image in kustomization.get("images", []):
        _set_image(objects, image)
    return objects, generated


def _config_map(directory: Path, generator: dict) -> dict:
    if unknown := set(generator) - GENERATOR_KEYS:
        raise UnsupportedKustomization(f"configMapGenerator {generator['name']}: {sorted(unknown)} not supported")
    data: dict[str, str] = {}
    for entry in generator.get("files", []):
        key, _, path = entry.rpartition("=") if "=" in entry else (Path(entry).name, "", entry)
        source = (directory / path).resolve()
        if not source.is_relative_to(directory.resolve()):  # kustomize's load restrictor refuses these too
            raise UnsupportedKustomization(f"{entry}: kustomize reads no file outside {directory}")
        data[key] = source.read_text()
    for literal in generator.get("literals", []):
        key, _, value = literal.partition("=")
        data[key] = value
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": generator["name"]}, "data": data}
    digest = hashlib.sha256(json.dumps(config_map, sort_keys=True).encode()).hexdigest()[:10]
    config_map["metadata"]["name"] = f"{generator['name']}-{digest}"  # as kustomize: a new name for new content
    return config_map


def pod_specs(obj: dict) -> list[dict]:
    """The pod spec of a workload (none for other kinds)."""
    if obj["kind"] not in POD_TEMPLATE_KINDS:
        return []
    return [obj["spec"]["template"]["spec"]]


def containers(obj: dict) -> list[dict]:
    return [c for spec in pod_specs(obj) for c in (*spec.get("initContainers", []), *spec["containers"])]


def _rename_config_maps(spec: dict, renamed: dict[str, str]) -> None:
    for volume in spec.get("volumes", []):
        if "configMap" in volume:
            volume["configMap"]["name"] = renamed.get(volume["configMap"]["name"], volume["configMap"]["name"])
    for container in spec["containers"]:
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                source["configMapRef"]["name"] = renamed.get(source["configMapRef"]["name"])


def _set_image(objects: list[dict], image: dict) -> None:
    for obj in objects:
        for container in containers(obj):
            name, _, tag = container["image"].partition(":")
            if name == image["name"]:
                container["image"] = f"{image.get('newName', name)}:{image.get('newTag', tag or 'latest')}"
