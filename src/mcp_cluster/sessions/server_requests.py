"""The requests a 2025-11-25 session's server sends its client (sampling, elicitation), and their answers.

The client answers each with a POST of its own, which may arrive late: after the instance that asked has died
and another has taken the session over. Ids are unique across a session's generations (each takeover is
one): generation g issues ids from (g - 1) * 2**32 + 1 on, so a late answer can never match a request the
new holder issued. An answer whose id the session is not waiting for (an earlier generation's, one already
answered, one never issued) is refused with an error that says so, and resolves nothing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, TypeGuard

from mcp.server.connection import Connection
from mcp.shared.dispatcher import as_request_id

from mcp_cluster import sdk_internals
from mcp_cluster.http.messages import Refused
from mcp_cluster.sessions.connections import Connections

IDS_PER_GENERATION = 2**32
# A POST the client sends with no method is its answer to one of the server's requests.
NOT_AWAITED = (
    "this session is not waiting for an answer to server request {id}: it was answered already, never sent, or "
    "sent by an instance that has since stopped (the call that asked ended without it; retry that call with its "
    "own request id, which is safe); this answer was not used"
)


class ServerRequests:
    """What the sessions held here wait for: each one's requests to the client, by their ids."""

    def __init__(self, connections: Connections) -> None:
        self._connections = connections

    def adopt(self, session_id: str, connection: Connection, generation: int) -> None:
        """A session rebuilt here at `generation`: its requests to the client take ids no earlier one took."""
        dispatcher = sdk_internals.dispatcher_of(connection)
        sdk_internals.issue_request_ids_after(dispatcher, (generation - 1) * IDS_PER_GENERATION)
        self._connections.add(session_id, connection)

    def check_answer(self, session_id: str, message: Mapping[str, Any]) -> None:
        """Raise Refused (400) for an answer the session held here is not waiting for; let any other through
        (a session not held here gets the SDK's own answer)."""
        connection = self._connections.get(session_id)
        request_id = as_request_id(message.get("id"))
        if connection is None or request_id is None:
            return
        if not sdk_internals.awaits_answer(sdk_internals.dispatcher_of(connection), request_id):
            raise Refused(400, -32600, NOT_AWAITED.format(id=json.dumps(request_id)))


def is_answer(message: object) -> TypeGuard[dict[str, Any]]:
    """Whether a JSON-RPC message is the client's answer to a server request (a result or an error, no method)."""
    return isinstance(message, dict) and "method" not in message and ("result" in message or "error" in message)
