"""The images the compose tests run on, built in a thread of their own while the tests that need none run
(the compose tests run last), with a deadline of their own rather than a test's timeout; each line of the
build goes to a log whose path is printed, and the last lines into the failure if it fails."""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path

import pytest

from loadtest.harness.compose import V2, build_images, docker_unavailable
from tests.plugins.layer_times import LAYER_TIMES
from tests.utils.clients import DOCKER_REQUIRED, require_docker

BUILD = pytest.StashKey["ImageBuild"]()
NICENESS = 10  # the local build steps yield the CPU to the tests running meanwhile


class ImageBuild:
    """One build of the images in a background thread: `wait()` gives the image variables or the error."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.seconds = 0.0
        self._result: dict[str, str] | RuntimeError = RuntimeError("the image build did not finish")
        self._thread = threading.Thread(target=self._build, name="compose-images", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wait(self) -> dict[str, str] | RuntimeError:
        self._thread.join()
        return self._result

    def _build(self) -> None:
        started = time.monotonic()
        with self.log.open("w") as log:
            try:
                self._result = build_images(lambda line: print(line, file=log, flush=True), NICENESS)
            except RuntimeError as error:
                self._result = error  # the compose tests fail with it; the others still run
        self.seconds = time.monotonic() - started


def pytest_collection_modifyitems(session, config, items) -> None:
    """The compose tests last, so that the images build while the others run."""
    items[:] = [i for i in items if not i.get_closest_marker("compose")] + [
        i for i in items if i.get_closest_marker("compose")
    ]


def pytest_collection_finish(session) -> None:
    wanted = any(item.get_closest_marker("compose") for item in session.items)
    if not wanted or session.config.option.collectonly or docker_unavailable() is not None:
        return
    build = session.config.stash[BUILD] = ImageBuild(Path(tempfile.gettempdir()) / "mcpscale-compose-images.log")
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    build.start()
    if all(item.get_closest_marker("compose") for item in session.items):  # nothing to run meanwhile: wait here,
        reporter.write_line(f"images: building the compose tests' images first: {build.log}")  # not in a test
        build.wait()
        return
    reporter.write_line(f"images: building the compose tests' images while the other tests run: {build.log}")


@pytest.fixture(scope="session")
def compose_images(request) -> dict[str, str]:
    """The image variables for compose (none where the official images can be pulled)."""
    require_docker("compose tests", V2 if DOCKER_REQUIRED else None)  # CI proves `docker compose` v2
    build = request.config.stash.get(BUILD, None)
    if build is None:
        pytest.fail("the compose images were not built: a test that uses them is marked `compose`")
    waited = time.monotonic()
    built = build.wait()
    request.config.stash[LAYER_TIMES]["images"].append(build.seconds)
    request.config.stash[LAYER_TIMES]["images waited for"].append(time.monotonic() - waited)
    if isinstance(built, RuntimeError):
        pytest.fail(f"the compose images could not be built: {built}")
    return built
