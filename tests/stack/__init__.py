"""Tests against real local processes: instances, nginx, Redis, Locust, the experiments' short runs."""
