"""Join tokens: minted on the leader, shown once, stored (replicated) only as a SHA-256 digest.

Form: `SWMTKN-1-<50 characters of [0-9a-z]>` (about 258 bits of randomness). The digest is looked up
and then compared with `hmac.compare_digest`; the token itself is never logged or stored.
"""

from __future__ import annotations

import hashlib
import re
import secrets

PREFIX = "SWMTKN-1-"
_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
_SECRET_LEN = 50
_FORM = re.compile(r"^SWMTKN-1-[0-9a-z]{50}$")


def mint() -> str:
    return PREFIX + "".join(secrets.choice(_ALPHABET) for _ in range(_SECRET_LEN))


def well_formed(token: str) -> bool:
    return _FORM.match(token) is not None


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def redact(text: str) -> str:
    """`text` with any join token in it replaced, for messages that might echo user input."""
    return re.sub(r"SWMTKN-1-[0-9A-Za-z]+", "SWMTKN-1-<redacted>", text)
