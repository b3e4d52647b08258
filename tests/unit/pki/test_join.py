"""Joining: the CA fetched for a join is pinned by the token's digest."""

from __future__ import annotations

from typing import Any

from tests.unit.fake_manager import CA_PEM, other_ca_pem
from warren.pki import certs, join, tokens


def test_the_ca_fetch_keeps_only_the_certificate_whose_digest_it_checked(monkeypatch: Any) -> None:
    # A manager (or someone in between) answering the token's CA followed by one of its own must not get
    # its own into the trust store that the join then verifies the manager with.
    answer = {"ca": (CA_PEM + other_ca_pem()).decode("ascii")}

    class _Answer:
        status_code = 200

        def json(self) -> Any:
            return answer

    class _Client:
        def __init__(self, **_: Any) -> None:
            pass

        def __enter__(self) -> _Client:
            return self

        def __exit__(self, *_: Any) -> None:
            pass

        def get(self, _url: str) -> _Answer:
            return _Answer()

    monkeypatch.setattr(join.httpx, "Client", _Client)
    token = tokens.mint(certs.ca_digest(CA_PEM))
    kept = join.pinned_ca("127.0.0.1:1", token)
    assert kept.count(b"BEGIN CERTIFICATE") == 1
    assert certs.ca_digest(kept) == certs.ca_digest(CA_PEM)
