"""How the client and the CLI word a duration (Go style, as Warren's flags take them)."""

from __future__ import annotations


def format_duration(seconds: float) -> str:
    """Go-style short duration: 86400 -> "24h", 5400 -> "1h30m", 90 -> "1m30s", 0.5 -> "500ms"."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else "", f"{secs}s" if secs else ""]
    return "".join(parts) or "0s"
