"""mcp_cluster/sessions."""
