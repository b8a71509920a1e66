"""The issuer's signing key: an EC P-256 key made once and kept, its public half published as a JWKS."""

from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

ALGORITHM = "ES256"


class SigningKey:
    def __init__(self, private_key: ec.EllipticCurvePrivateKey, key_id: str) -> None:
        self.private_key, self.key_id = private_key, key_id

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(ec.generate_private_key(ec.SECP256R1()), secrets.token_hex(8))

    @classmethod
    def load_or_create(cls, path: Path) -> SigningKey:
        """The key kept at `path` (readable by this user only), made there on the first start."""
        if not path.exists():
            key = cls.generate()
            pem = key.private_key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            write_whole(path, json.dumps({"kid": key.key_id, "pem": pem.decode()}))
        kept = json.loads(path.read_text())
        return cls(serialization.load_pem_private_key(kept["pem"].encode(), password=None), kept["kid"])

    def jwks(self) -> dict:
        public = json.loads(ECAlgorithm.to_jwk(self.private_key.public_key()))
        return {"keys": [{**public, "kid": self.key_id, "alg": ALGORITHM, "use": "sig"}]}

    def mint(self, issuer: str, subject: str, audience: str, seconds: int = 600, **claims: object) -> str:
        """A signed access token (RFC 9068) for `subject`, for the resource `audience`."""
        now = int(time.time())
        body = {"iss": issuer, "sub": subject, "aud": audience, "iat": now, "exp": now + seconds, **claims}
        return jwt.encode(
            {**body, "jti": secrets.token_hex(8)},
            self.private_key,
            ALGORITHM,
            headers={"kid": self.key_id, "typ": "at+jwt"},
        )


def write_whole(path: Path, text: str, mode: int = 0o600) -> None:
    """Write a file whole or not at all; by default one only this user may read."""
    partial = path.with_name(f".{path.name}.partial")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)
    partial.replace(path)
