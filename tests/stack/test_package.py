"""The library as a team installs it: its wheel holds `mcp_cluster` alone (no demo server), installs in a clean
venv at the floor of every dependency range (Python 3.11) and at the newest versions allowed (Python 3.12 where
one is here, as docs/layer.md's `pip install` line gives them), and serves a server kept outside the repository
(examples/notes, copied elsewhere) with `mcp-cluster serve`, its notes kept in a real redis-server. Needs PyPI, as
any `pip install` does."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from loadtest.harness.stack import answers, free_port
from loadtest.harness.topology import PROJECT_ROOT
from tests.utils.clients import session, wait_for
from tests.utils.docs import PAGES, TAGGED, blocks, page

pytestmark = pytest.mark.timeout(420)


def python_312() -> str:
    """A Python 3.12 that runs (pyenv's shim may name one it will not run), else this one."""
    candidates = [shutil.which("python3.12"), *map(str, sorted(Path.home().glob(".pyenv/versions/3.12*/bin/python3")))]
    for candidate in filter(None, candidates):
        if subprocess.run([candidate, "-c", "import venv"], capture_output=True).returncode == 0:
            return candidate
    return sys.executable


def run(*cmd: str, cwd, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300, **kwargs)
    assert result.returncode == 0, f"{' '.join(cmd)}:\n{result.stdout}\n{result.stderr}"
    return result


def floors() -> list[str]:
    """Each dependency at the lowest version its range allows, as pip constraints."""
    declared = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    lines = []
    for requirement in map(Requirement, declared):
        (floor,) = [spec.version for spec in requirement.specifier if spec.operator == ">="]
        marker = f"; {requirement.marker}" if requirement.marker else ""
        lines.append(f"{requirement.name}=={floor}{marker}")
    return lines


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """The files a build reads, copied (a build writes into its source tree)."""
    copy = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md", "requirements.txt"):
        shutil.copy(PROJECT_ROOT / name, copy / name)
    shutil.copytree(PROJECT_ROOT / "src", copy / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return copy


@pytest.fixture(scope="module")
def wheel(source, tmp_path_factory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(dist), str(source), cwd=dist)
    (built,) = dist.glob("mcp_cluster-*.whl")
    return built


def venv(python: str, where: Path) -> dict[str, str]:
    """A clean venv; the environment that runs in it, with no MCP_* variable of ours."""
    run(python, "-m", "venv", str(where), cwd=where.parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MCP_", "PYTHON"))}
    return {**env, "PATH": f"{where / 'bin'}:{env['PATH']}", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


@pytest.fixture(scope="module")
def elsewhere(tmp_path_factory) -> Path:
    """A server of one's own, in a folder outside the repository."""
    folder = tmp_path_factory.mktemp("elsewhere")
    shutil.copytree(PROJECT_ROOT / "examples" / "notes", folder / "notes", ignore=shutil.ignore_patterns("__pycache__"))
    return folder


def test_the_wheel_holds_the_library_alone_typed_with_its_command(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert {name.split("/")[0] for name in names} == {"mcp_cluster", wheel.name.split("-")[0] + "-0.1.0.dist-info"}
    assert "mcp_cluster/py.typed" in names and "mcp_cluster/__init__.py" in names
    entry_points = zipfile.ZipFile(wheel).read("mcp_cluster-0.1.0.dist-info/entry_points.txt").decode()
    assert "mcp-cluster = mcp_cluster.cli:main" in entry_points


@pytest.fixture(scope="module", params=["floors", "newest"])
def installed(request, wheel, source, tmp_path_factory) -> tuple[str, dict[str, str], dict[str, str]]:
    """Which bound, a venv's environment holding the library at it, and the versions pip put there."""
    root = tmp_path_factory.mktemp(request.param)
    if request.param == "floors":
        env = venv(sys.executable, root / "venv")  # 3.11: the oldest Python the library supports
        constraints = root / "floors.txt"
        constraints.write_text("\n".join(floors()) + "\n")
        run("pip", "install", "--quiet", str(wheel), "--constraint", str(constraints), cwd=root, env=env)
    else:
        env = venv(python_312(), root / "venv")
        run("bash", "-euo", "pipefail", "-c", blocks()["pip-install"][0], cwd=source, env=env)
    frozen = run("pip", "list", "--format", "freeze", cwd=root, env=env).stdout.split()
    return request.param, env, dict(line.lower().replace("_", "-").split("==") for line in frozen if "==" in line)


def test_the_floors_are_what_installs(installed):
    bound, _, versions = installed
    declared = {line.split("==")[0]: line.split("==")[1].split(";")[0] for line in floors()}
    if bound == "floors":
        assert {name: Version(versions[name]) for name in declared} == {k: Version(v) for k, v in declared.items()}
    else:  # what the newest install got is within every range
        ranges = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
        for requirement in map(Requirement, ranges):
            assert requirement.specifier.contains(versions[requirement.name]), (requirement, versions[requirement.name])


def test_a_server_kept_elsewhere_serves_from_the_installed_library(installed, elsewhere, redis_url):
    _, env, _ = installed
    probe = "import mcp_cluster; from mcp_cluster import InstanceSettings, instance_app; print(mcp_cluster.__file__)"
    location = run("python", "-c", probe, cwd=elsewhere, env=env).stdout.strip()
    assert "site-packages" in location and not location.startswith(str(PROJECT_ROOT))

    port = free_port()
    env = {**env, "MCP_INSTANCE_ID": "notes1", "MCP_LISTEN_PORT": str(port)}
    env.update(MCP_SESSION_STORE="redis", MCP_REDIS_URL=redis_url, MCP_FORWARD_PORT=str(free_port()))
    server = subprocess.Popen(
        ["mcp-cluster", "serve", "notes.server:mcp"], cwd=elsewhere, env=env, stderr=subprocess.PIPE
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: answers(f"{url}/readyz") or server.poll() is not None, timeout=30, interval=0.1)
        assert server.poll() is None, server.stderr.read().decode()
        client = session(f"{url}/mcp")
        counts = [client.call_tool("add_note", {"text": f"note {n}"}).result["structuredContent"] for n in (1, 2)]
        assert counts == [{"result": 1}, {"result": 2}]
        assert client.call_tool("list_notes").result["structuredContent"] == {"result": ["note 1", "note 2"]}
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_every_page_installs_the_library_the_same_way():
    """The README and docs/layer.md each show the install line; the one run above is the one both show."""
    shown = {match["code"] for name in PAGES for match in TAGGED.finditer(page(name)) if match["tag"] == "pip-install"}
    assert shown == {blocks()["pip-install"][0]}
