"""mcp_cluster/metrics."""
