"""Checks of strings that come from outside (clients, workers, managers) before they are used.

- Control characters (Unicode category Cc: C0 U+0000-U+001F, DEL U+007F, C1 U+0080-U+009F) are refused
  in every name, label, image, path, hostname and constraint. In a command's arguments and an env value
  (passed verbatim to execve or the Docker API, never parsed by Warren) TAB and LF are allowed, for
  multi-line `sh -c` scripts and PEM values; NUL, CR, ESC and the other controls are refused there too.
- Image references follow the Docker reference grammar (github.com/distribution/reference, reference.go
  and regexp.go), with Docker's rule for telling a registry from the first path component (it has a
  "." or ":" or is "localhost"), and bounded lengths.

Each check raises ValueError with a message that says what is wrong without repeating the value (a
pydantic validator turns it into `field: Value error, ...`, a 400 naming the field).
"""

from __future__ import annotations

import re

# -- control characters ---------------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_IN_TEXT = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # TAB (09) and LF (0a) allowed


def _describe(ch: str) -> str:
    return "NUL" if ch == "\x00" else f"U+{ord(ch):04X}"


def control_char(value: str, *, multiline: bool = False) -> str | None:
    """The first control character in `value` as "U+001B at 3" (None if there is none); `multiline`
    allows TAB and LF."""
    found = (_CONTROL_IN_TEXT if multiline else _CONTROL).search(value)
    if found is None:
        return None
    return f"{_describe(found.group())} at {found.start()}"


def no_control(value: str) -> str:
    """`value` unchanged; ValueError if it holds any control character."""
    where = control_char(value)
    if where is not None:
        raise ValueError(f"must not contain control characters (found {where})")
    return value


def no_control_but_tab_lf(value: str) -> str:
    """`value` unchanged; ValueError if it holds a control character other than TAB or LF."""
    where = control_char(value, multiline=True)
    if where is not None:
        raise ValueError(
            f"must not contain NUL or control characters other than tab and newline (found {where})"
        )
    return value


def _escape(found: re.Match[str]) -> str:
    return f"\\x{ord(found.group()):02x}"


def escape_controls(value: str, *, keep_tab_lf: bool = True) -> str:
    """`value` with each control character written as a visible escape (ESC -> `\\x1b`), TAB and LF
    kept unless `keep_tab_lf` is False. For text that is kept rather than refused (a worker's task
    message) and for what a terminal shows (the CLI), where an ESC would be obeyed."""
    return (_CONTROL_IN_TEXT if keep_tab_lf else _CONTROL).sub(_escape, value)


# -- image references -----------------------------------------------------------------------------

# Longest image reference taken (name, tag and digest together); characters.
IMAGE_REF_MAX = 512
# Longest repository path (without the registry), distribution's RepositoryNameTotalLengthMax.
IMAGE_PATH_MAX = 255
# Longest registry host[:port]: a DNS name (253) and a port.
IMAGE_DOMAIN_MAX = 253 + 6

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|-+)"
_PATH_COMPONENT = re.compile(_ALNUM + r"(?:" + _SEPARATOR + _ALNUM + r")*", re.ASCII)
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME = _DOMAIN_COMPONENT + r"(?:\." + _DOMAIN_COMPONENT + r")*"
_IPV6 = r"\[[a-fA-F0-9:]+\]"  # no zone (%eth0), as in distribution
_DOMAIN = re.compile(r"(?:" + _DOMAIN_NAME + r"|" + _IPV6 + r")(?::[0-9]+)?", re.ASCII)
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", re.ASCII)
# The digest algorithms Docker registers (go-digest: sha256, sha384, sha512), each with its hex length.
_DIGEST_HEX = {"sha256": 64, "sha384": 96, "sha512": 128}
_HEX = re.compile(r"[0-9a-f]+", re.ASCII)


def image_problem(ref: str) -> str | None:
    """Why `ref` is not an image reference (`[registry/]path[:tag][@digest]`), or None if it is one.

    Split by hand and each part matched whole (re.fullmatch, ASCII classes), so no input makes the
    match slow and no trailing newline slips past a `$`."""
    if not ref:
        return "must not be empty"
    if len(ref) > IMAGE_REF_MAX:
        return f"is longer than {IMAGE_REF_MAX} characters"
    where = control_char(ref)
    if where is not None:
        return f"must not contain control characters (found {where})"
    name, at, digest = ref.partition("@")
    if at:
        algorithm, _, hex_ = digest.partition(":")
        if _DIGEST_HEX.get(algorithm) != len(hex_) or _HEX.fullmatch(hex_) is None:
            return "has a malformed digest (sha256: and 64, sha384: and 96, or sha512: and 128 hex digits)"
    slash = name.rfind("/")
    colon = name.rfind(":")
    tag = ""
    if colon > slash:  # a ":" after the last "/" starts the tag (before it, it is a registry port)
        name, tag = name[:colon], name[colon + 1 :]
        if _TAG.fullmatch(tag) is None:
            return "has a malformed tag (up to 128 letters, digits, '_', '.', '-'; not first '.' or '-')"
    if not name:
        return "has no repository name"
    parts = name.split("/")
    if "." in parts or ".." in parts:
        return "must not have a '.' or '..' path component"
    first = parts[0]
    if len(parts) > 1 and ("." in first or ":" in first or first == "localhost"):
        if len(first) > IMAGE_DOMAIN_MAX or _DOMAIN.fullmatch(first) is None:
            return "has a malformed registry (host[:port])"
        parts = parts[1:]
    path = "/".join(parts)
    if len(path) > IMAGE_PATH_MAX:
        return f"has a repository path longer than {IMAGE_PATH_MAX} characters"
    for part in parts:
        if not part:
            return "has an empty path component ('//', or a leading or trailing '/')"
        if _PATH_COMPONENT.fullmatch(part) is None:
            if _PATH_COMPONENT.fullmatch(part.lower()) is not None:
                return "must be lowercase (repository path)"
            return (
                "has a malformed path component (lowercase letters and digits, separated by one '.', "
                "one or two '_', or '-'s; no '..')"
            )
    return None


def image_ref(value: str) -> str:
    """`value` unchanged; ValueError if it is not an image reference (see image_problem)."""
    problem = image_problem(value)
    if problem is not None:
        raise ValueError(f"not a valid image reference: {problem}")
    return value
