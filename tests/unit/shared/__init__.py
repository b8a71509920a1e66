"""mcp_cluster/shared."""
