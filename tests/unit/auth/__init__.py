"""mcp_cluster/auth."""
