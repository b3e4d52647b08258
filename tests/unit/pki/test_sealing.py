"""Sealing: a value opens only with its key and for the purpose it was sealed for."""

from __future__ import annotations

import pytest

from warren.errors import CorruptStateError
from warren.pki import sealing


def test_sealing_opens_only_with_the_key_and_for_the_same_purpose() -> None:
    key, other = sealing.new_data_key(), sealing.new_data_key()
    blob = sealing.seal(key, b"hunter2", "secret:s1")
    assert b"hunter2" not in blob and sealing.unseal(key, blob, "secret:s1") == b"hunter2"
    assert sealing.seal(key, b"hunter2", "secret:s1") != blob  # a fresh nonce each time
    for wrong_key, aad in ((other, "secret:s1"), (key, "secret:s2")):
        with pytest.raises(CorruptStateError):
            sealing.unseal(wrong_key, blob, aad)
    with pytest.raises(CorruptStateError, match="malformed"):
        sealing.unseal(key, b"\x01short", "secret:s1")
