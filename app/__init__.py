"""The demo MCP server: one small tool per capability of the seed's feature matrix, and the state they keep."""
