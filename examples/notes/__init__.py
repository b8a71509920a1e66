"""A notes server with tools of its own, served as one instance of several by the layer, mcp_cluster."""
