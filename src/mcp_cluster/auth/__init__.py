"""Who may use the instances: bearer JWTs verified against a JWKS, and the principal each session belongs to."""
