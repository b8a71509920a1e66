"""ASGI pieces around the SDK's app: the messages the layer reads and writes, and the middleware."""
