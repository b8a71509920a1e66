"""mcp_cluster/http."""
