"""Servers of their own that use the layer, mcp_cluster, through its public API only."""
