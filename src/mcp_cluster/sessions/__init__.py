"""2025-11-25 session features any tool can use, whichever the session store: session-scoped state and
resource subscriptions."""
