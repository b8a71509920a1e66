"""In-process tests (a real redis-server where one is needed), mirroring the source: the first tier, stopped at
the first failure."""
