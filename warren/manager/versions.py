"""Managers of mixed Warren versions (a rolling upgrade): the leader proposes no command that one of
them cannot apply.

Every command has a command version (`warren.store.commands.required_version`: 1 for every command
Warren had when versions began, higher for commands added since). Every manager advertises the highest
version it applies: `command_version` in its /v1/ready answer (a manager that does not say is a Warren
from before versions were advertised: version 1). Before proposing a command of a version above 1, the
leader asks the other managers (voters and learners) and refuses the command if one of them applies
less (ConflictError, 409: upgrade every manager first) or cannot be asked (UnavailableError, 503:
retry when it answers). Otherwise that manager would refuse the committed entry and keep a state that
differs from the others'. Commands of version 1, all of today's, cost nothing: nobody is asked.

A command that changes no state (NO_STATE_OPS: the leader's notes for the event stream) waits for no
manager that does not answer: the leader writes its "elected" note right after a failover, while the
old leader is typically dead. If that manager turns out to run an older Warren, it refuses the entry
(logged) and its state is still the same as everyone's; one that answers with an older version still
stops the command.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from warren.errors import ConflictError, UnavailableError
from warren.store import commands

# A manager seen applying a version is believed for this long before it is asked again (it may be
# restarted with an older Warren meanwhile); seconds. A refusal is never remembered: once the last
# manager is upgraded, the next attempt goes through.
VERSION_TTL_S = 10.0
# Ops that change no state: a manager that does not answer is not waited for (see above).
NO_STATE_OPS = frozenset({"cluster.note"})

# The highest command version the manager at an API address applies; None if it did not answer.
Probe = Callable[[str], Awaitable[int | None]]
# (name, API address or None if unknown) of every other manager that is a Raft member.
Peers = Callable[[], list[tuple[str, str | None]]]


class VersionGate:
    """`await gate.check(cmd)` before proposing `cmd`; `probe` is set once the manager can ask its peers
    (until then a command above version 1 is refused whenever there are other managers)."""

    def __init__(self, peers: Peers, probe: Probe | None = None, clock: Callable[[], float] = time.monotonic):
        self.peers = peers
        self.probe = probe
        self._clock = clock
        self._seen: dict[str, tuple[int, float]] = {}  # API address -> (version, when it said so)

    async def check(self, cmd: commands.Command) -> None:
        needed = commands.required_version(cmd)
        if needed <= commands.BASE_COMMAND_VERSION:
            return
        peers = self.peers()
        versions = await asyncio.gather(*(self._version(addr, needed) for _, addr in peers))
        for (name, _), version in zip(peers, versions, strict=True):
            if version is None:
                if cmd.OP in NO_STATE_OPS:
                    continue
                raise UnavailableError(
                    f"manager {name} did not say which commands its Warren applies; {cmd.OP} (command "
                    f"version {needed}) is proposed only when every manager can apply it: retry when "
                    f"{name} answers"
                )
            if version < needed:
                raise ConflictError(
                    f"manager {name} runs an older Warren that cannot apply {cmd.OP} (command version "
                    f"{needed}; it applies up to {version}): upgrade every manager first"
                )

    async def _version(self, addr: str | None, needed: int) -> int | None:
        if addr is None or self.probe is None:
            return None
        now = self._clock()
        seen = self._seen.get(addr)
        if seen is not None and seen[0] >= needed and now - seen[1] < VERSION_TTL_S:
            return seen[0]
        version = await self.probe(addr)
        if version is not None and version >= needed:
            self._seen[addr] = (version, now)
        return version
