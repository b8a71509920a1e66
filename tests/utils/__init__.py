"""What several test modules share: clients and callbacks, the docs' shell blocks, Locust runs."""
