"""pytest plugins: the compose images built while the first tests run, and the run's time by layer."""
