"""The Locust users: an abstract user holding one MCP client, the update streams, and the instances tab."""
