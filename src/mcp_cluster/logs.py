"""One JSON object a line on stderr, each carrying the instance id, and never a session id."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time

# The SDK mints session ids as 32 hex digits and logs them; on a server without auth they are credentials.
_SESSION_ID = re.compile(r"\b[0-9a-f]{32}\b")


def session_fingerprint(session_id: str | None) -> str | None:
    """What the logs show of a session id: enough to correlate lines, not enough to take the session over. The
    same for the id with its instance's prefix (`app1.<id>`, as clients hold it) and without (as the SDK does)."""
    return None if session_id is None else hashlib.sha256(session_id.rpartition(".")[2].encode()).hexdigest()[:12]


_ENCODER = json.JSONEncoder(default=str)  # made once: json.dumps(..., default=str) makes one per call


class JsonFormatter(logging.Formatter):
    def __init__(self, instance_id: str) -> None:
        super().__init__()
        self.instance_id = instance_id
        self._second = (-1, "")  # the last second formatted, and its text: one strftime a second, not a line

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": f"{self._timestamp(int(record.created))}.{int(record.msecs):03d}Z",
            "level": record.levelname,
            "instance": self.instance_id,
            "logger": record.name,
            "msg": _SESSION_ID.sub(lambda m: f"<session {session_fingerprint(m.group())}>", record.getMessage()),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return _ENCODER.encode(entry)

    def _timestamp(self, second: int) -> str:
        if self._second[0] != second:
            self._second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
        return self._second[1]


def configure_logging(instance_id: str, level: str) -> None:
    """Route every logger (ours, the SDK's, uvicorn's) through the JSON formatter."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter(instance_id))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("httpx2").setLevel(logging.WARNING)  # one line per JWKS fetch otherwise
    # The SDK's transport logs "Terminating session: None" at INFO after every stateless request.
    logging.getLogger("mcp.server.streamable_http").setLevel(logging.WARNING)
    logging.getLogger("uvicorn.access").disabled = True  # mcp_cluster.access writes the richer line
    logging.captureWarnings(True)  # a warning (a deprecation the SDK reports) is one JSON line too, not raw text
    # No line shows the thread or process names: a record spends no time looking them up.
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
