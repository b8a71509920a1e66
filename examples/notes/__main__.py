"""`python -m examples.notes`: one instance of the notes server, configured by the MCP_* variables."""

import sys

from mcp_cluster.serving import run_from_env

if __name__ == "__main__":
    sys.exit(run_from_env(f"{__package__}.server:create_app", "notes"))
