"""Load tests: the protocol clients, the Locust users, the matrix and its report, the local and compose stacks."""
