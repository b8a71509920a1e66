"""The local issuer (issuer/)."""
