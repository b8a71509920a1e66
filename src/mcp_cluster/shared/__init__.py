"""What every instance shares through Redis whenever a Redis URL is set: the connection, the key names,
the event bus and the request-state key ring."""
