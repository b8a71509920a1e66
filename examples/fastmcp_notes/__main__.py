"""`python -m examples.fastmcp_notes`: one instance of the FastMCP notes server, as `mcp-cluster serve` runs it."""

import sys

from mcp_cluster.cli import main

if __name__ == "__main__":
    sys.exit(main(["serve", f"{__package__}.server:mcp"]))
