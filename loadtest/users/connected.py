"""One connected client per Locust user, for the scale curve (`python -m loadtest scale`):

    locust -f loadtest/users/connected.py --host http://localhost:8080 [--mcp-protocol 2026-07-28]

Each user opens its session (2025-11-25) and then calls the plain tool once a second, so N users are the
load of N clients that are connected and working, not N clients calling as fast as they can. Each keeps a
random phase within the second, as independent clients do: Locust starts a whole second's users at once
(its spawn rate's worth), and without it every user would call in the same instant, every second. Kept out
of loadtest/locustfile.py, whose users all run in every matrix cell.
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

# locust puts only this file's directory on sys.path; the project root holds the `loadtest` package.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from locust import constant_pacing, task

from loadtest.client import capabilities as cap
from loadtest.users.base import McpUser

CALL_EVERY_SECONDS = 1.0


class ConnectedClientUser(McpUser):
    wait_time = constant_pacing(CALL_EVERY_SECONDS)

    def on_start(self) -> None:
        super().on_start()
        time.sleep(random.uniform(0, CALL_EVERY_SECONDS))  # this client's phase (gevent's sleep: others run)

    @task
    def process_file(self) -> None:
        self.call(cap.BASIC, cap.basic_tool)
