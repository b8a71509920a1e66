"""`python -m mcp_cluster`: the `mcp-cluster` command, where only the package is at hand (an image's source)."""

import sys

from mcp_cluster.cli import main

if __name__ == "__main__":
    sys.exit(main())
