"""Typed interface of the `warren_raft` extension module (Raft consensus on openraft).

Checked against the compiled module by `mypy.stubtest` (`make lint`).
"""

from typing import Literal, TypedDict, final

__version__: str
# The openraft release the core is built on (what `warren --version` reports).
OPENRAFT_VERSION: str

# -- errors -----------------------------------------------------------------------------------------

class RaftError(Exception):
    """Root of every error raised by warren_raft."""

class ConfigError(RaftError):
    """A configuration value or combination is invalid (message says which and why)."""

class NotLeaderError(RaftError):
    """This node is not the leader; retry on `leader_addr` (None while no leader is known)."""

    leader_id: int | None
    leader_addr: str | None

class StorageError(RaftError):
    """The durable log or snapshot store failed (I/O error, disk full, ...)."""

class CorruptLogError(StorageError):
    """The on-disk log failed validation at open; the node refuses to start from it."""

class MembershipError(RaftError):
    """A membership change was refused (e.g. another change is in progress, unknown node)."""

class RaftTimeoutError(RaftError):
    """The operation did not complete within its deadline (e.g. no quorum)."""

class ShutdownError(RaftError):
    """The node has been shut down (or its core stopped on a fatal error)."""

# -- configuration ----------------------------------------------------------------------------------

@final
class Config:
    """Timers and limits of a node, validated on construction."""

    heartbeat_interval_ms: int
    election_timeout_min_ms: int
    election_timeout_max_ms: int
    snapshot_threshold: int
    max_in_snapshot_log_to_keep: int
    max_payload_entries: int
    max_entry_bytes: int
    max_frame_bytes: int
    rpc_timeout_ms: int

    def __new__(
        cls,
        *,
        heartbeat_interval_ms: int | None = None,
        election_timeout_min_ms: int | None = None,
        election_timeout_max_ms: int | None = None,
        snapshot_threshold: int | None = None,
        max_in_snapshot_log_to_keep: int | None = None,
        max_payload_entries: int | None = None,
        max_entry_bytes: int | None = None,
        max_frame_bytes: int | None = None,
        rpc_timeout_ms: int | None = None,
    ) -> Config:
        """Omitted (or None) values take the core's defaults: heartbeat 50 ms, election timeout 150-300 ms,
        snapshot every 10,000 entries keeping 1,000 behind it, 64 entries per AppendEntries,
        1 MiB per entry, 80 MiB per frame, 1,000 ms per RPC. Raises ConfigError when invalid."""

@final
class TlsConfig:
    """A node's identity for mutual TLS 1.3 on the Raft transport, checked on construction.

    `ca_pem`: the CA certificate(s) peers must chain to. `cert_pem`: this node's certificate, then
    any intermediates. `key_pem`: its private key (PKCS#8, SEC1 or PKCS#1; EC P-256/P-384, Ed25519
    or RSA). `peer_name`: the DNS name every node's certificate must be valid for (its
    subjectAltName); all nodes of a cluster share it, and it is what a dialer verifies and sends as
    SNI instead of the peer's IP. Certificates need the serverAuth and clientAuth usages (or no
    extended key usage), since every node is server and client of its peers.

    Raises ValueError (naming the argument, never quoting the key) on malformed PEM, a key that does
    not match the certificate, or a peer_name that is not a DNS name. The repr shows the peer name and
    fingerprint only.
    """

    def __new__(cls, *, ca_pem: bytes, cert_pem: bytes, key_pem: bytes, peer_name: str) -> TlsConfig: ...
    @property
    def peer_name(self) -> str: ...
    @property
    def fingerprint(self) -> bytes:
        """SHA-256 of this node's certificate (DER): the value peers pass to `set_revoked`."""

# -- state-machine work items -----------------------------------------------------------------------

@final
class ApplyBatch:
    """Committed entries to apply, in order. Call `complete` with one response per entry."""

    kind: Literal["apply"]
    entries: list[tuple[int, int, bytes]]
    """(index, term, payload) per proposed command, in commit order. Commands proposed together may
    share one log entry, and so one index: the order within the list is the order to apply."""

    def complete(self, responses: list[bytes]) -> None: ...
    def fail(self, message: str) -> None: ...

@final
class BuildSnapshot:
    """Write the whole state (as applied so far) to the file at `path`, then call `complete`."""

    kind: Literal["snapshot"]
    path: str
    last_index: int | None

    def complete(self) -> None: ...
    def fail(self, message: str) -> None: ...

@final
class RestoreSnapshot:
    """Replace the whole state with the snapshot file at `path` (None: reset to empty).

    The file stays owned by warren_raft: read or copy it, never modify or delete it.
    """

    kind: Literal["restore"]
    path: str | None
    last_index: int | None

    def complete(self) -> None: ...
    def fail(self, message: str) -> None: ...

Work = ApplyBatch | BuildSnapshot | RestoreSnapshot

# -- metrics ----------------------------------------------------------------------------------------

class NodeInfo(TypedDict):
    addr: str
    meta: str

class PeerMetrics(TypedDict):
    match_index: int | None
    last_contact_s: float | None

class Metrics(TypedDict):
    id: int
    role: Literal["leader", "follower", "candidate", "learner", "shutdown"]
    term: int
    leader_id: int | None
    leader_addr: str | None
    commit_index: int | None
    applied_index: int | None
    last_log_index: int | None
    snapshot_index: int | None
    purged_index: int | None
    voters: list[int]
    learners: list[int]
    nodes: dict[int, NodeInfo]
    peers: dict[int, PeerMetrics]
    last_leader_contact_s: float | None
    millis_since_quorum_ack: int | None
    elections_total: int
    log_records_dropped: int
    tls: bool
    """Whether the transport is mutual TLS (the node was opened with `tls`)."""
    tls_handshake_failures: int
    """Failed TLS handshakes since the node opened, inbound and outbound (refused or invalid
    certificates, plain-TCP or silent clients, timeouts); 0 without TLS."""
    fatal_error: str | None
    """Why consensus stopped on its own, None while it runs and after `shutdown`. Set when the log
    (or snapshot store) failed to write or fsync: the log then accepts nothing more, the node stops
    serving peers (role "shutdown", so the others elect a leader among themselves) and the text
    names the operation, file and errno, e.g. "raft log write failed: write of
    /data/raft-log.redb failed: No space left on device (os error 28, ENOSPC); ...". Restart the
    node once the disk is fixed: it opens its log up to the last durable entry."""

# -- the node ---------------------------------------------------------------------------------------

@final
class RaftNode:
    """One Raft member. Its consensus runs on the extension's own threads, never waiting for the GIL."""

    @staticmethod
    def open(
        data_dir: str,
        node_id: int,
        listen_addr: str,
        *,
        advertise_addr: str | None = None,
        meta: str = ...,
        config: Config | None = None,
        tls: TlsConfig | None = None,
    ) -> RaftNode:
        """Open (or create) the node's durable state in `data_dir` and start serving Raft on `listen_addr`.

        With `tls`, every connection between nodes is mutual TLS 1.3: the listener accepts only
        clients whose certificate chains to `tls.ca_pem` and is valid for `tls.peer_name` (anything
        else is closed after the failed handshake, or after 3 s without one), and the dialer checks the
        server the same way. Without it, plain TCP.

        The first work item delivered by `next_work` is always a RestoreSnapshot (the latest snapshot,
        or None for an empty state): the state machine is rebuilt from snapshot plus log on every start.
        Raises CorruptLogError if the log fails validation, StorageError on I/O errors.
        """

    @property
    def node_id(self) -> int: ...
    @property
    def addr(self) -> str:
        """The advertised Raft address of this node."""

    async def bootstrap(self, members: dict[int, tuple[str, str]] | None = None) -> None:
        """Initialise a new cluster. `members` maps node id -> (addr, meta); default: just this node."""

    async def is_initialized(self) -> bool: ...
    async def propose(self, data: bytes) -> tuple[int, bytes]:
        """Commit `data` and wait until it is applied; returns (log index, state machine's response).

        Raises NotLeaderError on a non-leader (with the leader's id and address when known).
        """

    async def read_barrier(self) -> int:
        """Linearizable read point: on return, the local state machine has applied every write
        committed before the call. Returns that log index. Leader only (NotLeaderError otherwise)."""

    async def add_learner(self, node_id: int, addr: str, meta: str = ..., blocking: bool = True) -> int:
        """Add a non-voting member; with `blocking`, wait until it has caught up. Returns the log index."""

    async def change_membership(self, voters: list[int], retain: bool = False) -> int:
        """Set the voter set (joint consensus). Removed voters become learners if `retain`, else leave."""

    async def add_voter(self, node_id: int, addr: str, meta: str = ...) -> int:
        """Add as learner, wait until caught up, then promote to voter: a join never costs quorum."""

    async def remove_node(self, node_id: int) -> int:
        """Remove a voter or learner from the cluster."""

    async def transfer_leadership(self, to: int | None = None, timeout_s: float = 3.0) -> int:
        """Hand leadership to `to` (default: the most up-to-date voter) and wait until it leads.

        Returns the new leader's id. Leader only."""

    async def trigger_snapshot(self) -> None:
        """Build a snapshot now (log compaction follows)."""

    async def next_work(self) -> Work | None:
        """Next item for the state machine, in log order; None once the node has shut down.

        Raises StorageError (with `Metrics.fatal_error`'s text) instead of None when consensus
        stopped on a storage fault: whoever drives the state machine learns that the node is gone."""

    def metrics(self) -> Metrics: ...
    async def wait_role_change(self, role: str, term: int, leader_id: int | None) -> Metrics:
        """Wait until this node's `role`, `term` or `leader_id` differs from the ones given (pass those
        of the last `metrics()`), then return its metrics. Returns at once when they differ already,
        and once the node has stopped (role "shutdown"). No polling: the core wakes the caller when
        the vote, role or leader changes, and an idle node wakes nobody."""

    def update_tls(self, tls: TlsConfig) -> None:
        """Use `tls` for every new connection, both directions, from now on (certificate renewal, CA
        change). Open connections keep going, so nothing stalls. ValueError if opened without TLS."""

    def set_revoked(self, fingerprints: list[bytes]) -> None:
        """Replace the set of revoked certificates: SHA-256 digests of their DER (see
        `TlsConfig.fingerprint`). A peer presenting one is refused at handshake in both directions,
        and open connections with such a peer are closed. ValueError if opened without TLS or a
        digest is not 32 bytes."""

    async def shutdown(self) -> None:
        """Stop Raft, flush the log, close the port. Idempotent."""

def init_logging(level: str = "info") -> None:
    """Forward the core's log records at `level` and above to Python's `logging` (logger "warren_raft")."""
