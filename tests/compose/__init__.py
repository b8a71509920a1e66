"""Tests of the compose file, and of the stack compose runs."""
