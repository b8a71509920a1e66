"""The images the compose tests run on, built once before the first test, with a deadline of their own rather
than a test's timeout, printing what is being done (minutes on a fresh machine)."""

from __future__ import annotations

import time

import pytest

from loadtest.compose import V2, build_images, docker_unavailable
from tests.plugins.layer_times import LAYER_TIMES
from tests.utils.clients import DOCKER_REQUIRED, require_docker

IMAGES = pytest.StashKey[dict[str, str] | RuntimeError]()


def pytest_collection_finish(session) -> None:
    wanted = any(item.get_closest_marker("compose") for item in session.items)
    if not wanted or session.config.option.collectonly or docker_unavailable() is not None:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    reporter.write_line("images: the compose tests need the app, Locust and (without a registry) stand-in images")
    started = time.monotonic()
    try:
        session.config.stash[IMAGES] = build_images(lambda line: reporter.write_line(f"images: {line}"))
    except RuntimeError as error:
        session.config.stash[IMAGES] = error  # the compose tests fail with it; the others still run
    session.config.stash[LAYER_TIMES]["images"].append(time.monotonic() - started)


@pytest.fixture(scope="session")
def compose_images(request) -> dict[str, str]:
    """The image variables for compose (none where the official images can be pulled)."""
    require_docker("compose tests", V2 if DOCKER_REQUIRED else None)  # CI proves `docker compose` v2
    built = request.config.stash.get(IMAGES, None)
    if built is None:
        pytest.fail("the compose images were not built: a test that uses them is marked `compose`")
    if isinstance(built, RuntimeError):
        pytest.fail(f"the compose images could not be built: {built}")
    return built
