"""2025-11-25 sessions that any instance serves (`MCP_SESSION_STORE=redis`): the owner registry in Redis,
the router and the signed hop to the owner, takeover when an owner dies, and GET-stream events kept for
resuming. docs/design/redis-sessions.md has the whole picture."""
