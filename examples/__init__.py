"""Servers of their own that use the layer in `app` through its public API only."""
