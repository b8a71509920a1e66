"""The demo server (app/)."""
