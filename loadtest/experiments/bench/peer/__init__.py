"""The benchmark's peer: FastMCP 4 (`fastmcp` on PyPI) serving the same `whoami`, in a venv of its own."""
