"""Path, header and query parameters shared by the route modules."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path

from warren.api.models import NODE_NAME_PATTERN
from warren.errors import InvalidError, UnauthorizedError
from warren.formats import NAME_PATTERN

NamePath = Annotated[str, Path(pattern=NAME_PATTERN, max_length=63)]
NodePath = Annotated[str, Path(pattern=NODE_NAME_PATTERN)]


def if_match_version(value: str | None) -> int | None:
    """The object version in an `If-Match` header (None when absent)."""
    if value is None:
        return None
    text = value.strip().strip('"')
    if not text.isdigit():
        raise InvalidError(f"If-Match must be an object version (an integer), got {value!r}")
    return int(text)


def bearer(value: str | None) -> str:
    """The secret in `Authorization: Bearer <secret>`; UnauthorizedError without one (the header's
    value is never echoed: it is a secret)."""
    if value is None:
        raise UnauthorizedError("missing Authorization: Bearer <worker session secret>")
    scheme, _, secret = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise UnauthorizedError("expected Authorization: Bearer <worker session secret>")
    return secret.strip()
