"""An MCP server built to be run as several instances behind a load balancer."""
