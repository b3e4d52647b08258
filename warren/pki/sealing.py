"""Sealing: AES-256-GCM under the cluster data key, for what the replicated state must keep secret
(secret values, the CA's private key).

The data key is 32 random bytes minted by `cluster init`; managers keep it in their data dir (0600)
and a joining manager receives it over mutual TLS. It is never in the replicated state, the Raft log,
a snapshot or a backup, so none of those reveals a sealed value. Each sealed value is bound to what it
is (`aad`, e.g. `secret:db-password`) so a blob copied to another row does not open.
"""

from __future__ import annotations

import os

from warren.errors import CorruptStateError

KEY_BYTES = 32
_NONCE_BYTES = 12
_VERSION = b"\x01"


def new_data_key() -> bytes:
    return os.urandom(KEY_BYTES)


# `cryptography` is imported by seal and unseal, not with this module: a manager loads it (about 8 MB)
# only once it seals or opens something (docs/decisions.md, "Daemons load cryptography only to make
# keys").


def seal(key: bytes, plaintext: bytes, aad: str) -> bytes:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = os.urandom(_NONCE_BYTES)
    return _VERSION + nonce + AESGCM(key).encrypt(nonce, plaintext, aad.encode("utf-8"))


def unseal(key: bytes, blob: bytes, aad: str) -> bytes:
    """The plaintext of `blob`, or CorruptStateError if it was not sealed with `key` for `aad`."""
    if len(blob) < 1 + _NONCE_BYTES + 16 or blob[:1] != _VERSION:
        raise CorruptStateError(f"sealed value for {aad} is malformed")
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce, body = blob[1 : 1 + _NONCE_BYTES], blob[1 + _NONCE_BYTES :]
    try:
        return AESGCM(key).decrypt(nonce, body, aad.encode("utf-8"))
    except InvalidTag:
        raise CorruptStateError(
            f"sealed value for {aad} does not open with this manager's data key "
            "(a different cluster's key, or damaged)"
        ) from None
