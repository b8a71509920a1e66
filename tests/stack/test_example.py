"""examples/notes, a server with tools of its own, as three instances behind nginx round-robin with the Redis
store: sampling, elicitation, progress and session-scoped state across instances, and past the SIGKILL of
the instance that owns the session. Real redis-server, uvicorn and nginx."""

from __future__ import annotations

import os
import signal
import sqlite3

import pytest

from examples.notes import server as notes_server
from loadtest.harness.stack import Stack, free_port
from loadtest.harness.topology import INSTANCES
from tests.utils.clients import SAMPLED_TEXT, Recorder, wait_for
from tests.utils.examples import only_session_owner, sessions_served

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def notes(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("notes")
    logged = {"MCP_ACCESS_LOG": "on"}  # the tests read which instance served each call
    with Stack(run_dir=run_dir, server="examples.notes", store="redis", port=free_port(), app_env=logged) as stack:
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
    assert forgotten.content[0].text == "forgotten" and len(recorder.elicitation_requests) == 1
    assert after.structured_content == {"result": []}
    assert len(sessions_served(notes)) == len(INSTANCES), "round-robin should reach every instance"


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


def test_a_note_mailed_by_two_runs_of_one_call_is_mailed_once(tmp_path, monkeypatch):
    """The outbox keys a mail by the call's request key, the same for every run of the call (a retry with the same
    id that runs it again, after its instance died or Redis failed under it); a call with no key (no session)
    mails each time it runs."""
    monkeypatch.setattr(notes_server, "OUTBOX", tmp_path / "outbox.sqlite3")
    for key in ("session:call-1", "session:call-1", "session:call-2", None, None):
        notes_server._post(key, "ada@example.com", "hello")
    with sqlite3.connect(notes_server.OUTBOX) as outbox:
        keys = [key for (key,) in outbox.execute("SELECT key FROM mail ORDER BY rowid")]
    assert keys == ["session:call-1", "session:call-2", None, None]
