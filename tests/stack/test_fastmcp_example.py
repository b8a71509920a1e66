"""examples/fastmcp_notes, a FastMCP 4 server, as three instances behind nginx round-robin with the Redis store,
spoken to by the official Python client: sampling, elicitation, progress, logs and session-scoped state across
instances, and past the SIGKILL of the instance that owns the session. Real redis-server, uvicorn and nginx."""

from __future__ import annotations

import os
import signal

import pytest

from loadtest.harness.stack import Stack, free_port
from loadtest.harness.topology import INSTANCES
from tests.utils.clients import SAMPLED_TEXT, Recorder, wait_for
from tests.utils.examples import only_session_owner, sessions_served

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def notes(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("fastmcp-notes")
    logged = {"MCP_ACCESS_LOG": "on"}  # the tests read which instance served each call
    server = "examples.fastmcp_notes"
    with Stack(run_dir=run_dir, server=server, store="redis", port=free_port(), app_env=logged) as stack:
        yield stack


async def test_every_capability_and_the_notes_work_across_instances(notes):
    recorder = Recorder(elicited={"forget": True})
    async with recorder.client(notes.url) as client:
        counts = [(await client.call_tool("add_note", {"text": f"note {n}"})).structured_content for n in (1, 2)]
        suggested = await client.call_tool("suggest_note", {"topic": "load balancers"})
        listed = await client.call_tool("list_notes", {})
        reviewed = await client.call_tool("review_notes", {}, progress_callback=recorder.on_progress)
        forgotten = await client.call_tool("forget_notes", {})
        after = await client.call_tool("list_notes", {})
    assert counts == [{"result": 1}, {"result": 2}]
    assert suggested.structured_content == {"result": 3} and len(recorder.sampling_requests) == 1
    assert listed.structured_content == {"result": ["note 1", "note 2", SAMPLED_TEXT]}
    assert reviewed.content[0].text == f"note 1\nnote 2\n{SAMPLED_TEXT}" and recorder.progress == [1, 2, 3]
    assert [log["msg"] for log in recorder.logs] == [f"read note {n}" for n in (1, 2, 3)]  # FastMCP logs a dict
    assert forgotten.content[0].text == "forgotten" and len(recorder.elicitation_requests) == 1
    assert after.structured_content == {"result": []}
    assert set(sessions_served(notes)) == set(INSTANCES), "round-robin should reach every instance"


async def test_the_notes_outlive_the_instance_that_owns_the_session(notes):
    recorder = Recorder(elicited={"forget": False})
    async with recorder.client(notes.url) as client:
        for n in (1, 2, 3):
            await client.call_tool("add_note", {"text": f"kept {n}"})
        owner = only_session_owner(notes)
        os.killpg(notes.proc(owner).pid, signal.SIGKILL)
        wait_for(lambda: not notes.proc(owner).alive())
        listed = await client.call_tool("list_notes", {})  # relayed to a dead owner: taken over, served
        added = await client.call_tool("add_note", {"text": "after"})
        suggested = await client.call_tool("suggest_note", {"topic": "takeovers"})
        reviewed = await client.call_tool("review_notes", {}, progress_callback=recorder.on_progress)
        kept = await client.call_tool("forget_notes", {})
    assert owner in INSTANCES
    assert listed.structured_content == {"result": ["kept 1", "kept 2", "kept 3"]}
    assert added.structured_content == {"result": 4} and suggested.structured_content == {"result": 5}
    assert reviewed.content[0].text.splitlines() == ["kept 1", "kept 2", "kept 3", "after", SAMPLED_TEXT]
    assert recorder.progress == [1, 2, 3, 4, 5]
    assert kept.content[0].text == "kept" and len(recorder.elicitation_requests) == 1
