"""Join tokens: minted on the leader, shown once, stored (replicated) only as a SHA-256 digest.

Form: `SWMTKN-1-<CA digest>-<secret>`, as Swarm's:

- the CA digest (50 base36 characters, `warren.pki.certs.ca_digest`) lets a joining node check the
  manager's CA certificate before it sends anything, so a token also pins the cluster it joins;
- the secret is 25 characters of [0-9a-z] (about 129 bits of randomness).

The digest of the whole token is looked up and then compared with `hmac.compare_digest`; the token
itself is never logged or stored.
"""

from __future__ import annotations

import hashlib
import re
import secrets

from warren.pki.peek import DIGEST_LEN

PREFIX = "SWMTKN-1-"
_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
_SECRET_LEN = 25
_FORM = re.compile(rf"^SWMTKN-1-([0-9a-z]{{{DIGEST_LEN}}})-[0-9a-z]{{{_SECRET_LEN}}}$")


def mint(ca_digest: str) -> str:
    return PREFIX + ca_digest + "-" + "".join(secrets.choice(_ALPHABET) for _ in range(_SECRET_LEN))


def well_formed(token: str) -> bool:
    return _FORM.match(token) is not None


def ca_digest(token: str) -> str | None:
    """The CA digest a well-formed token pins, else None."""
    match = _FORM.match(token)
    return match.group(1) if match else None


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def redact(text: str) -> str:
    """`text` with any join token in it replaced, for messages that might echo user input."""
    return re.sub(r"SWMTKN-1-[0-9A-Za-z-]+", "SWMTKN-1-<redacted>", text)
