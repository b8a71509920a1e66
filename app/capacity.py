"""The refusal a store gives when it holds as many things as it may: the client learns why, nothing is lost."""


class AtCapacity(Exception):
    """The store is full; the message says of what, how many, and what the client can do."""
