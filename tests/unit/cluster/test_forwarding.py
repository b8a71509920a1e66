"""The forwarded hop's signature, in-process: what it binds, how long it lives, and the secret's rotation."""

from __future__ import annotations

import time

import pytest

from mcp_cluster.cluster import forwarding
from mcp_cluster.cluster.forwarding import ForwardSigner

SECRET, OTHER = b"s" * 32, b"o" * 32


def scope(
    method: str = "POST", path: str = "/mcp", session: str = "abc", query: bytes = b"", name: bytes = b"whoami"
) -> dict:
    headers = [(b"mcp-session-id", session.encode()), (b"mcp-name", name), (b"accept", b"application/json")]
    return {"method": method, "path": path, "query_string": query, "headers": headers}


def test_a_signature_verifies_for_exactly_the_request_it_signed():
    signer = ForwardSigner(SECRET, "app1:1")
    header = signer.sign(scope(), b'{"id":1}', "app2:1")
    assert signer.verify(header, scope(), b'{"id":1}').recipient == "app2:1"
    for other, body in [
        (scope(), b'{"id":2}'),
        (scope(method="DELETE"), b'{"id":1}'),
        (scope(path="/other"), b'{"id":1}'),
        (scope(session="xyz"), b'{"id":1}'),
        (scope(query=b"a=1"), b'{"id":1}'),
        (scope(name=b"increment"), b'{"id":1}'),  # a header the owner acts on
        ({**scope(), "headers": scope()["headers"][:2]}, b'{"id":1}'),  # one of them left out
    ]:
        assert not signer.verify(header, other, body), other


def test_only_the_cluster_secret_makes_a_valid_signature():
    header = ForwardSigner(OTHER, "intruder").sign(scope(), b"", "app1:1")
    assert not ForwardSigner(SECRET, "app1:1").verify(header, scope(), b"")


def test_every_signature_carries_a_nonce_of_its_own():
    signer = ForwardSigner(SECRET, "app1:1")
    nonces = {signer.verify(signer.sign(scope(), b"", "app2:1"), scope(), b"").nonce for _ in range(100)}
    assert len(nonces) == 100 and all(len(nonce) == 32 for nonce in nonces)


def test_a_signature_names_the_process_it_is_for_and_holds_for_no_other():
    """Rewriting the recipient (to use a captured hop at another process) breaks the signature."""
    signer = ForwardSigner(SECRET, "app1:1")
    stamp, sender, _, nonce, mac = signer.sign(scope(), b"", "app2:1").split(";")
    assert not signer.verify(";".join([stamp, sender, "app3:1", nonce, mac]), scope(), b"")


NOW = int(time.time())


@pytest.mark.parametrize(
    "header",
    ["", "x;y;z", "1;app1;", "١٢٣;app1;a;00", ";;", ";;;;", f"{NOW};a;b;zz;00", f"{NOW};a;{'0' * 32};00"],
    ids=lambda header: header.replace(str(NOW), "now"),  # the same in every xdist worker
)
def test_malformed_headers_are_refused(header):
    assert not ForwardSigner(SECRET, "app1:1").verify(header, scope(), b"")


def test_a_signature_expires(monkeypatch):
    signer = ForwardSigner(SECRET, "app1:1")
    header = signer.sign(scope(), b"", "app2:1")
    later = int(header.partition(";")[0]) + forwarding.MAX_SKEW_SECONDS + 1
    monkeypatch.setattr(forwarding.time, "time", lambda: later)  # the clock, not the code under test
    with pytest.raises(forwarding.ClocksApart, match=r"^this hop was signed 11 s before this instance's clock says"):
        signer.verify(header, scope(), b"")
    forged = header.rpartition(";")[0] + ";" + "0" * 64
    assert not signer.verify(forged, scope(), b"")  # unsigned: refused as any forgery, whatever its time


def test_after_a_rotation_the_previous_secret_still_verifies_and_the_new_one_signs():
    old = ForwardSigner(SECRET, "app1:1")
    in_flight = old.sign(scope(), b"", "app2:1")
    rotated = ForwardSigner(SECRET, "app2:1")
    rotated.rotate(OTHER)
    assert rotated.verify(in_flight, scope(), b"")
    assert ForwardSigner(OTHER, "app3:1").verify(rotated.sign(scope(), b"", "app3:1"), scope(), b"")
    rotated.rotate(b"n" * 32)  # two rotations on, the first secret is gone
    assert not rotated.verify(in_flight, scope(), b"")
