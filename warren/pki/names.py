"""The DNS names Warren certificates are issued for, one per role: TLS peers verify a manager as
`warren-manager` whatever address they dialled.

Apart from warren.pki.certs so that a TLS client (the CLI, a worker's session) need not load the
`cryptography` package, which costs about 80 ms and 10 MB per process.
"""

from __future__ import annotations


def server_name(role: str) -> str:
    """The DNS name a certificate of `role` is valid for."""
    return f"warren-{role}"


MANAGER_NAME = server_name("manager")
