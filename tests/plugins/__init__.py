"""pytest plugins: the compose images built before the first test, and the run's time by layer."""
