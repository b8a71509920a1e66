"""Every Redis key and channel the layer uses, named once. All start with `mcp:`."""

from __future__ import annotations

SESSION = "mcp:session:{}"  # hash: a 2025-11-25 session's record (owner, initialize params, session state)
CLIENT_SESSIONS = (
    "mcp:client-sessions:{}"  # sorted set: a client's sessions and reservations (mcp_cluster/sessions/quota.py)
)
OWNER = "mcp:owner:{}"  # string: an owner process's internal URL, kept alive by its heartbeat
EVENTS = "mcp:events:{}"  # stream: a session's GET-stream events, for Last-Event-ID resumption
CLUSTER_SECRET = "mcp:cluster-secret"  # string: the secret that signs the forwarded hop
REQUEST_STATE_KEYS = "mcp:request-state-keys"  # string: the key ring sealing 2026-07-28 requestState
USED_REQUEST_STATE = "mcp:used-state:{}"  # string: a side-effecting retry's sealed requestState, honoured once
REQUESTS = "mcp:requests:{}"  # hash: a session's keyed requests, each with its digest, runner and answer
REQUESTS_AGE = "mcp:requests-age:{}"  # sorted set: when each of a session's keyed requests began (ms)
CLIENT_REQUESTS = "mcp:client-requests:{}"  # sorted set: when each keyed request of a client began, over its sessions
CLIENT_ANSWER_BYTES = "mcp:client-answer-bytes:{}"  # string: the bytes of a client's kept answers
CALL = "mcp:call:{}"  # string: a write's first answer: neither a re-sent script nor a retried call applies it twice
CLIENT_CALLS = "mcp:client-calls:{}"  # sorted set: a client's kept write answers (CALL keys), by when each was made
UPDATES = "mcp:updates:{}"  # stream: the last events of a resource (or #tools, #prompts, #resources), for catch-up
BUS_CHANNEL = "mcp:bus"  # pub/sub channel: server events (a resource changed, a list changed)
