"""`pip install .` in a clean venv (docs/layer.md's block, as written) gives the layer, and a server of one's
own runs on it from outside the repository (examples/notes, copied elsewhere). Needs PyPI, as any
`pip install` does."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from loadtest.stack import answers, free_port
from loadtest.topology import PROJECT_ROOT
from tests.utils.clients import session, wait_for
from tests.utils.docs import blocks

pytestmark = pytest.mark.timeout(300)


def run(*cmd: str, cwd, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=240, **kwargs)
    assert result.returncode == 0, f"{' '.join(cmd)}:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A venv holding `pip install .` of a copy of the repository (a build writes into its source tree)."""
    root = tmp_path_factory.mktemp("package")
    source = root / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "requirements.txt"):
        shutil.copy(PROJECT_ROOT / name, source / name)
    shutil.copytree(PROJECT_ROOT / "app", source / "app", ignore=shutil.ignore_patterns("__pycache__"))
    run(sys.executable, "-m", "venv", str(root / "venv"), cwd=root)
    venv_bin = root / "venv" / "bin"
    activated = {**os.environ, "PATH": f"{venv_bin}:{os.environ['PATH']}", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    run("bash", "-euo", "pipefail", "-c", blocks()["pip-install"][0], cwd=source, env=activated)
    elsewhere = root / "elsewhere"
    shutil.copytree(
        PROJECT_ROOT / "examples" / "notes", elsewhere / "notes", ignore=shutil.ignore_patterns("__pycache__")
    )
    return str(venv_bin / "python"), elsewhere


def test_the_public_api_comes_from_the_installed_package(installed):
    python, elsewhere = installed
    probe = "import app; from app import InstanceSettings, instance_app, session_state; print(app.__file__)"
    location = run(python, "-c", probe, cwd=elsewhere).stdout.strip()
    assert "site-packages" in location and not location.startswith(str(PROJECT_ROOT))


def test_a_server_of_ones_own_serves_from_the_installed_package(installed):
    python, elsewhere = installed
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_")}
    env.update(MCP_INSTANCE_ID="notes1", MCP_LISTEN_PORT=str(port))
    server = subprocess.Popen([python, "-m", "notes"], cwd=elsewhere, env=env, stderr=subprocess.PIPE)
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
