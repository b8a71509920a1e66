"""The fault scorecard: what each fault a deployment meets does to calls, sessions and acknowledged writes.

    python -m loadtest faults [--quick] [--sessions 6] [--out results/faults] [--page README.md]

For each configuration of the local stack (memory and Redis store; `session` and round-robin policy),
sessions count through nginx while one fault at a time strikes (catalogue.py): an instance killed and
started again, a rolling restart, an instance or Redis paused, Redis killed and started again, an nginx
reload, and (full run) a kill every minute for ten minutes. A row says how many calls failed and why,
how many sessions were lost, how many acknowledged increments were lost or applied twice, and how long
until the calls succeeded again; with the Redis store each row is judged against the goals
(scorecard.py). `--quick` (CI) runs the Redis store under round-robin with the faults of a few seconds.
The exit status is 1 when a goal is missed.
"""
