"""The notes server written with FastMCP 4, served as one instance of several by the layer, mcp_cluster."""
