"""Renewing a node's certificate before it expires, without downtime (workers and managers alike).

Node certificates are short-lived (ManagerSettings.node_cert_lifetime_s), so every node renews its own
once `SecuritySettings.renew_after_fraction` of the lifetime has passed: it makes a new key (a renewal
never reuses one), sends a CSR for it through `request` (the caller's own authenticated call, made
with the current certificate), checks the answer, replaces its TLS files and hands the new material
to `on_renewed`, which loads it into the contexts the node uses. Connections already open keep the
certificate they were made with, so nothing is interrupted.

A failed renewal (no leader reachable, a refused call, a disk error) is retried every
`renew_retry_s` until it works; the half of the lifetime left leaves plenty of room. A certificate
that already expired (the node was down) is renewed at once, which works only if the managers still
accept it: otherwise the node must join again.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from warren.config import SECURITY, SecuritySettings
from warren.errors import ConfigError, InvalidError, WarrenError
from warren.pki import offload
from warren.pki.material import NodeMaterial, load_node, save_node
from warren.pki.peek import Role

if TYPE_CHECKING:  # checking an answer loads `cryptography`; waiting for the renewal does not
    from cryptography import x509

log = logging.getLogger(__name__)

Request = Callable[[str], Awaitable[Mapping[str, Any]]]
Sleep = Callable[[float], Awaitable[Any]]

# Longest single wait before the wall clock is looked at again: the event loop's timers follow a
# monotonic clock, which stands still while a machine is suspended and ignores a clock being set, and
# a renewal must not be late for either. Seconds.
_RECHECK_S = 60.0


def utc_text(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def check_issued(
    cert_pem: bytes,
    key_pem: bytes,
    ca_pem: bytes,
    *,
    name: str | None = None,
    role: Role | None = None,
    cluster_id: str | None = None,
) -> x509.Certificate:
    """The certificate a manager answered with, if it is one this node can use: for `key_pem`'s key,
    signed by `ca_pem`, and naming `name`, `role` and `cluster_id` where given. InvalidError if not,
    so a wrong answer never replaces working material."""
    from warren.pki import certs

    cert = certs.load_cert(cert_pem)
    ca = certs.load_cert(ca_pem)
    if cert.public_key() != certs.load_key(key_pem).public_key():
        raise InvalidError("the manager answered with a certificate for another key")
    if not certs.signed_by(cert, ca):
        raise InvalidError("the manager answered with a certificate its CA did not sign")
    who = certs.identity(cert)
    for what, wanted, got in (
        ("name", name, who.name),
        ("role", role, who.role),
        ("cluster", cluster_id, who.cluster_id),
    ):
        if wanted is not None and got != wanted:
            raise InvalidError(f"the manager answered with a certificate for {what} {got!r}, not {wanted!r}")
    return cert


def _pem(doc: Mapping[str, Any], key: str) -> bytes:
    value = doc.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidError(f"the renewal answer has no {key!r}")
    try:
        return value.encode("ascii")
    except UnicodeError:
        raise InvalidError(f"the renewal answer's {key!r} is not PEM") from None


class Renewer:
    """Keeps the certificate in `data_dir`'s TLS material renewed; `await Renewer(...).run()` (forever,
    until cancelled).

    - `request(csr_pem)`: asks the cluster for a certificate for the CSR, with the node's current
      certificate; answers `{"certificate", "ca", ...}` (POST /v1/certs/renew);
    - `on_renewed(material)`: loads the new material into the node's TLS contexts.

    `clock` (wall-clock seconds, as certificates count time) and `sleep` are replaced in tests.
    """

    def __init__(
        self,
        data_dir: str,
        request: Request,
        on_renewed: Callable[[NodeMaterial], None],
        *,
        settings: SecuritySettings = SECURITY,
        clock: Callable[[], float] = time.time,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.data_dir = data_dir
        self.request = request
        self.on_renewed = on_renewed
        self.settings = settings
        self._clock = clock
        self._sleep = sleep
        self.renewals = 0  # completed renewals, for tests and diagnostics

    def due_at(self, material: NodeMaterial) -> float:
        """When `material`'s certificate is to be renewed: `renew_after_fraction` into its lifetime."""
        facts = material.facts
        issued, expires = facts.issued_at, facts.not_after
        return issued + self.settings.renew_after_fraction * max(0.0, expires - issued)

    async def run(self) -> None:
        material = load_node(self.data_dir)
        if material is None:
            raise ConfigError(f"{self.data_dir} holds no node certificate to renew")
        while True:
            await self._until(self.due_at(material))
            material = await self._renew_until_done(material)

    async def _until(self, when: float) -> None:
        while (left := when - self._clock()) > 0:
            await self._sleep(min(left, _RECHECK_S))

    async def _renew_until_done(self, current: NodeMaterial) -> NodeMaterial:
        while True:
            try:
                material = await self.renew_once(current)
            except (WarrenError, OSError) as exc:
                # The reason only: errors here never carry key material or credentials.
                log.warning(
                    "certificate renewal failed (%s); retrying in %g s", exc, self.settings.renew_retry_s
                )
                await self._sleep(self.settings.renew_retry_s)
                continue
            return material

    async def renew_once(self, current: NodeMaterial) -> NodeMaterial:
        """One renewal: new key, CSR, request, check, save, `on_renewed`; the new material."""
        key = await offload.new_join_key()  # `cryptography` in a child process, once enabled
        doc = await self.request(key.csr_pem)
        ca_pem, cert_pem = _pem(doc, "ca"), _pem(doc, "certificate")
        was = current.identity
        expires = await offload.check_issued(
            cert_pem, key.key_pem, ca_pem, name=was.name, role=was.role, cluster_id=was.cluster_id
        )
        material = await asyncio.to_thread(save_node, self.data_dir, ca_pem, cert_pem, key.key_pem)
        self.renewals += 1
        log.info("certificate renewed, valid until %s", utc_text(expires))
        self.on_renewed(material)
        return material
