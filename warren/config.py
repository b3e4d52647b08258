"""Every Warren default, once, with its meaning and unit, and the rules that tie values together.

Durations are float seconds with an `_s` suffix here; they become integer milliseconds (`_ms`) only
at the Rust edge (`RaftSettings.to_core`). The CLI reads its defaults from this module.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import Decimal, DecimalException
from typing import TYPE_CHECKING

from warren.errors import ConfigError, raft_errors

if TYPE_CHECKING:
    import warren_raft

MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class RaftSettings:
    """Timers and limits of a manager's Raft node (defaults match warren_raft.Config's)."""

    # How often the leader sends heartbeats to followers; seconds. Must be below election_timeout_min_s.
    heartbeat_interval_s: float = 0.05
    # A follower that hears from no leader for a random time in [min, max) starts an election; seconds.
    # The spread keeps two followers from standing at once; failover takes about max + one election.
    election_timeout_min_s: float = 0.15
    election_timeout_max_s: float = 0.30
    # Build a snapshot (and compact the log) after this many entries since the last one; entries.
    snapshot_threshold: int = 10_000
    # Entries kept in the log behind the latest snapshot, so a slightly lagging follower catches up
    # from the log rather than receiving a whole snapshot; entries (0 keeps none).
    max_in_snapshot_log_to_keep: int = 1_000
    # Largest command payload a proposal may carry; bytes.
    max_entry_bytes: int = 1 * MIB
    # Deadline of one Raft RPC to a peer (and of the TCP connect to it); seconds.
    rpc_timeout_s: float = 1.0

    def validate(self) -> None:
        """Raise ConfigError naming the field and rule if a value or combination is impossible."""
        durations = {
            "heartbeat_interval_s": self.heartbeat_interval_s,
            "election_timeout_min_s": self.election_timeout_min_s,
            "election_timeout_max_s": self.election_timeout_max_s,
            "rpc_timeout_s": self.rpc_timeout_s,
        }
        for name, seconds in durations.items():
            if not math.isfinite(seconds) or _to_ms(seconds) < 1:
                # The core counts whole milliseconds: anything below 1 ms would become 0.
                raise ConfigError(f"{name} must be at least 0.001 s, got {seconds!r}")
        for name, count in (
            ("snapshot_threshold", self.snapshot_threshold),
            ("max_entry_bytes", self.max_entry_bytes),
        ):
            if count <= 0:
                raise ConfigError(f"{name} must be greater than 0, got {count!r}")
        if self.max_in_snapshot_log_to_keep < 0:
            raise ConfigError(
                f"max_in_snapshot_log_to_keep must not be negative, got {self.max_in_snapshot_log_to_keep!r}"
            )
        # Compared in milliseconds, as the core will see them.
        if _to_ms(self.heartbeat_interval_s) >= _to_ms(self.election_timeout_min_s):
            raise ConfigError(
                f"heartbeat_interval_s ({self.heartbeat_interval_s} s) must be less than "
                f"election_timeout_min_s ({self.election_timeout_min_s} s), "
                "or followers start elections between heartbeats"
            )
        if _to_ms(self.election_timeout_min_s) >= _to_ms(self.election_timeout_max_s):
            raise ConfigError(
                f"election_timeout_min_s ({self.election_timeout_min_s} s) must be less than "
                f"election_timeout_max_s ({self.election_timeout_max_s} s)"
            )

    def to_core(self) -> warren_raft.Config:
        """Validated settings as the core's `warren_raft.Config` (seconds -> integer milliseconds)."""
        self.validate()
        import warren_raft

        with raft_errors():
            return warren_raft.Config(
                heartbeat_interval_ms=_to_ms(self.heartbeat_interval_s),
                election_timeout_min_ms=_to_ms(self.election_timeout_min_s),
                election_timeout_max_ms=_to_ms(self.election_timeout_max_s),
                snapshot_threshold=self.snapshot_threshold,
                max_in_snapshot_log_to_keep=self.max_in_snapshot_log_to_keep,
                max_entry_bytes=self.max_entry_bytes,
                rpc_timeout_ms=_to_ms(self.rpc_timeout_s),
            )


def _to_ms(seconds: float) -> int:
    return round(seconds * 1000)


_UNIT_S = {"ms": Decimal("0.001"), "s": Decimal(1), "m": Decimal(60), "h": Decimal(3600)}
# One or more <number><unit> parts, Go style: "500ms", "1.5s", "1m30s".
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|s|m|h)")


def parse_duration(text: str) -> float:
    """Seconds in a duration such as "500ms", "1s", "1.5s", "1m", "1h" or "1m30s".

    A unit is required (a bare "5" is ambiguous); negative values are rejected. Raises ConfigError.
    """
    stripped = text.strip()
    pos = 0
    total = Decimal(0)
    while pos < len(stripped):
        part = _DURATION_PART.match(stripped, pos)
        if part is None:
            break
        try:
            total += Decimal(part.group(1)) * _UNIT_S[part.group(2)]
        except DecimalException:  # exponent overflow on absurdly long input
            break
        pos = part.end()
    if not stripped or pos != len(stripped):
        raise ConfigError(
            f"invalid duration {text!r}: expected a number and a unit, e.g. 500ms, 1s, 1.5s, 1m"
        )
    seconds = float(total)
    if not math.isfinite(seconds):
        raise ConfigError(f"invalid duration {text!r}: too large")
    return seconds
