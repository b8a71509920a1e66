"""The stacks the load runs against: local processes (stack), compose, pods on loopback, and the faults' tools
(a TCP link to cut, a clock to move, the CPU each process used)."""
