"""The hostile-load scorecard: one client attacks through nginx while another uses every capability.

Each attack comes from one address (127.0.0.1) at the full rate it can, against a stack of its own; a victim on
other addresses (127.0.0.2 and 127.0.0.3) meanwhile opens sessions and uses every capability, counting its
session counter exactly. The row gives the attacker's traffic and what nginx answered it, the victim's calls
and failures, the peak memory of nginx, the instances and Redis, and whether any process died. Goal: under
every attack, 0 victim failures, no process killed or restarted, nothing acknowledged lost.
"""
