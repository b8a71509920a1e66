"""The pure logic behind the tools, in-process, on a real filesystem."""

from __future__ import annotations

import pytest
from mcp.server.mcpserver.exceptions import ToolError

from app.bulletins import MemoryBulletins
from app.tools import apply_operation, resolve_data_file
from mcp_cluster.http.clients import ClientId

pytestmark = pytest.mark.anyio


@pytest.fixture
def data_dir(tmp_path):
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "sub" / "notes.txt").write_text("one two\nthree\n")
    (tmp_path / "secret.txt").write_text("outside")
    (data / "escape").symlink_to(tmp_path / "secret.txt")
    (data / "inside").symlink_to(data / "sub" / "notes.txt")
    return data


def test_files_under_the_data_directory_are_served(data_dir):
    assert resolve_data_file(data_dir, "sub/notes.txt") == data_dir / "sub" / "notes.txt"
    assert resolve_data_file(data_dir, "inside") == data_dir / "sub" / "notes.txt"


@pytest.mark.parametrize(
    "path",
    ["../secret.txt", "sub/../../secret.txt", "escape", "missing.txt", "sub", "../missing.txt", "poem\x00.txt", ""],
)
def test_whatever_names_no_file_inside_gets_one_refusal(data_dir, path):
    with pytest.raises(ToolError, match=r"^no file .* in the data directory; give a path relative to it"):
        resolve_data_file(data_dir, path)


def test_an_absolute_path_gets_the_same_refusal_whether_it_exists_or_not(data_dir, tmp_path):
    refusals = set()
    for path in (tmp_path / "secret.txt", tmp_path / "missing.txt", data_dir / "sub" / "notes.txt"):
        with pytest.raises(ToolError) as refused:
            resolve_data_file(data_dir, str(path))
        refusals.add(str(refused.value).replace(str(path), "<path>"))
    assert len(refusals) == 1


def test_operations():
    text = "one two\nthree\n"
    assert apply_operation(text, "count-lines") == "2 lines"
    assert apply_operation(text, "count-words") == "3 words"
    assert apply_operation(text, "reverse-words") == "three two one"
    assert apply_operation(text, "uppercase") == "ONE TWO\nTHREE\n"


ANYONE = ClientId("address:192.0.2.1", "this client address")


async def test_bulletins_version_every_publish_per_topic_and_stay_bounded():
    bulletins = MemoryBulletins(limit=2)
    assert (await bulletins.read("news")).version == 0
    assert (await bulletins.publish("news", "hello", ANYONE)).version == 1
    assert (await bulletins.publish("news", "again", ANYONE)).version == 2
    assert (await bulletins.read("news")).text == "again"
    await bulletins.publish("a", "x", ANYONE)
    await bulletins.publish("b", "y", ANYONE)  # "news" is now the least recently published of three
    assert (await bulletins.read("news")).version == 0
