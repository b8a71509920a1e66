"""mcp_cluster/cluster."""
