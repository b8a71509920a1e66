"""The experiments: each runs the load against a stack, writes its results (JSON and a Markdown page under
results/), and copies them into the docs pages given (results.py, the skeleton they share)."""
