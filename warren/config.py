"""Every Warren default, once, with its meaning and unit, and the rules that tie values together.

Durations are float seconds with an `_s` suffix here; they become integer milliseconds (`_ms`) only
at the Rust edge (`RaftSettings.to_core`). The CLI reads its defaults from this module.

Longer than Warren's 400-line rule on purpose: it is the one page where an operator reads every
setting with its meaning, unit and default, and where each rule tying two of them together lives next
to both. The text forms those settings are written in are warren/formats.py.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from warren.errors import ConfigError, raft_errors
from warren.formats import MIB, join_host_port, seconds_to_ms, split_host_port

if TYPE_CHECKING:
    import warren_raft

# The leader sends this many heartbeats per heartbeat timeout (RaftSettings.from_timeouts): a follower
# stands only after missing about three in a row. openraft's defaults (50 ms, 150-300 ms) have this ratio.
HEARTBEATS_PER_TIMEOUT = 3


@dataclass(frozen=True, slots=True)
class RaftSettings:
    """Timers and limits of a manager's Raft node: every value the core takes, defaulted here only.

    `to_core` passes each of them to `warren_raft.Config`; the core's own defaults serve its Rust tests.

    The three timers are the core's (openraft's). Users set them through the guide's two timers,
    `from_timeouts(heartbeat_timeout_s, election_timeout_s)`; the defaults equal `from_timeouts()`.
    """

    # How often the leader sends heartbeats to followers; seconds. Must be below election_timeout_min_s.
    heartbeat_interval_s: float = 0.05
    # A follower that hears from no leader for a random time in [min, max) starts an election; seconds.
    # The spread keeps two followers from standing at once. openraft 0.9 first waits out the leader
    # lease (= max) before that timer counts, so a dead leader is replaced after about max + [min, max)
    # (0.45-0.6 s with these defaults; measured: benches/results/latest.md).
    election_timeout_min_s: float = 0.15
    election_timeout_max_s: float = 0.30
    # Build a snapshot (and compact the log) after this many entries since the last one; entries.
    snapshot_threshold: int = 10_000
    # Entries kept in the log behind the latest snapshot, so a slightly lagging follower catches up
    # from the log rather than receiving a whole snapshot; entries (0 keeps none).
    max_in_snapshot_log_to_keep: int = 1_000
    # Largest command payload a proposal may carry; bytes.
    max_entry_bytes: int = 1 * MIB
    # Most entries the leader sends a follower in one AppendEntries request; entries.
    max_payload_entries: int = 64
    # Largest Raft transport frame sent or accepted; a peer announcing more is cut off. It must exceed
    # max_entry_bytes by the frame's overhead (the core says by how much); bytes.
    max_frame_bytes: int = 80 * MIB
    # Deadline of one Raft RPC to a peer (and of the TCP connect to it); seconds.
    rpc_timeout_s: float = 1.0

    @classmethod
    def from_timeouts(
        cls, heartbeat_timeout_s: float | None = None, election_timeout_s: float | None = None
    ) -> RaftSettings:
        """Settings from the guide's two timers, as hashicorp/raft means them (`--raft-heartbeat-timeout`,
        `--raft-election-timeout`); ConfigError with `fields` naming the timers when a value is unsafe.

        heartbeat_timeout_s: how long a follower hears no leader before it stands for election (at
        least; openraft randomises it within [heartbeat timeout, heartbeat timeout + election timeout)).
        election_timeout_s: that random spread, which is also how long a candidate that has not won
        waits beyond the heartbeat timeout before standing again; not given: the heartbeat timeout.
        The leader's heartbeat interval is derived: a third of the heartbeat timeout. The defaults
        (150 ms, 150 ms) give exactly RaftSettings()'s timers (openraft's own defaults).
        """
        default = cls()
        hb_timeout = default.election_timeout_min_s if heartbeat_timeout_s is None else heartbeat_timeout_s
        if election_timeout_s is None:
            # Not given: the same as the heartbeat timeout, as in the defaults and the guide's example.
            election_timeout_s = hb_timeout if heartbeat_timeout_s is not None else (
                default.election_timeout_max_s - default.election_timeout_min_s)
        fields = ("heartbeat_timeout_s", "election_timeout_s")
        for name, seconds in zip(fields, (hb_timeout, election_timeout_s), strict=True):
            if not math.isfinite(seconds) or seconds <= 0:
                raise ConfigError(f"{name} must be a positive duration, got {seconds!r}", fields=fields)
        if seconds_to_ms(hb_timeout) < HEARTBEATS_PER_TIMEOUT:
            raise ConfigError(
                f"heartbeat_timeout_s ({hb_timeout} s) must be at least "
                f"{HEARTBEATS_PER_TIMEOUT * 0.001:g} s: the leader sends a heartbeat every "
                f"1/{HEARTBEATS_PER_TIMEOUT} of it and the Raft core counts whole milliseconds",
                fields=fields,
            )
        if seconds_to_ms(election_timeout_s) < seconds_to_ms(hb_timeout):
            raise ConfigError(
                f"election_timeout_s ({election_timeout_s} s) must be at least heartbeat_timeout_s "
                f"({hb_timeout} s): followers stand for election after a random time between the "
                "heartbeat timeout and the sum of both, and a narrower spread lets managers that lost "
                "the same leader stand together and split the vote, again and again",
                fields=fields,
            )
        return dataclasses.replace(
            default,
            # In whole milliseconds, as the core counts: 150 ms gives exactly the default 0.05 s.
            heartbeat_interval_s=seconds_to_ms(hb_timeout / HEARTBEATS_PER_TIMEOUT) / 1000,
            election_timeout_min_s=hb_timeout,
            election_timeout_max_s=hb_timeout + election_timeout_s,
        )

    @property
    def heartbeat_timeout_s(self) -> float:
        """The guide's heartbeat timeout: a follower hears no leader this long before it may stand."""
        return self.election_timeout_min_s

    @property
    def election_timeout_s(self) -> float:
        """The guide's election timeout: the random spread above the heartbeat timeout."""
        return self.election_timeout_max_s - self.election_timeout_min_s

    def validate(self) -> None:
        """Raise ConfigError naming the field and rule if a value or combination is impossible."""
        durations = {
            "heartbeat_interval_s": self.heartbeat_interval_s,
            "election_timeout_min_s": self.election_timeout_min_s,
            "election_timeout_max_s": self.election_timeout_max_s,
            "rpc_timeout_s": self.rpc_timeout_s,
        }
        for name, seconds in durations.items():
            if not math.isfinite(seconds) or seconds_to_ms(seconds) < 1:
                # The core counts whole milliseconds: anything below 1 ms would become 0.
                raise ConfigError(f"{name} must be at least 0.001 s, got {seconds!r}")
        for name, count in (
            ("snapshot_threshold", self.snapshot_threshold),
            ("max_entry_bytes", self.max_entry_bytes),
            ("max_payload_entries", self.max_payload_entries),
            ("max_frame_bytes", self.max_frame_bytes),
        ):
            if count <= 0:
                raise ConfigError(f"{name} must be greater than 0, got {count!r}")
        if self.max_in_snapshot_log_to_keep < 0:
            raise ConfigError(
                f"max_in_snapshot_log_to_keep must not be negative, got {self.max_in_snapshot_log_to_keep!r}"
            )
        # Compared in milliseconds, as the core will see them.
        if seconds_to_ms(self.heartbeat_interval_s) >= seconds_to_ms(self.election_timeout_min_s):
            raise ConfigError(
                f"heartbeat_interval_s ({self.heartbeat_interval_s} s) must be less than "
                f"election_timeout_min_s ({self.election_timeout_min_s} s), "
                "or followers start elections between heartbeats",
                fields=("heartbeat_interval_s", "election_timeout_min_s"),
            )
        if seconds_to_ms(self.election_timeout_min_s) >= seconds_to_ms(self.election_timeout_max_s):
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
                heartbeat_interval_ms=seconds_to_ms(self.heartbeat_interval_s),
                election_timeout_min_ms=seconds_to_ms(self.election_timeout_min_s),
                election_timeout_max_ms=seconds_to_ms(self.election_timeout_max_s),
                snapshot_threshold=self.snapshot_threshold,
                max_in_snapshot_log_to_keep=self.max_in_snapshot_log_to_keep,
                max_entry_bytes=self.max_entry_bytes,
                max_payload_entries=self.max_payload_entries,
                max_frame_bytes=self.max_frame_bytes,
                rpc_timeout_ms=seconds_to_ms(self.rpc_timeout_s),
            )


def _require_positive(settings: object, *names: str) -> None:
    """Raise ConfigError unless each named duration of `settings` is finite and greater than 0."""
    for name in names:
        seconds = getattr(settings, name)
        if not math.isfinite(seconds) or seconds <= 0:
            raise ConfigError(f"{name} must be greater than 0, got {seconds!r}")


# -- the leader's orchestrator ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OrchestratorSettings:
    """Timers of the leader's dispatcher (worker sessions), scheduler and reconciler.

    Defaults are chosen so that a `kill -9`-ed worker's tasks run elsewhere well within 15 s:
    down after node_down_grace_s (5 s) + one reconcile pass + container start.
    """

    # A worker calls the leader at least this often (its session request is held open up to this
    # long and answered at once when its assignments change); seconds. Told to workers by the leader.
    heartbeat_period_s: float = 1.0
    # A worker not heard from for this long is written down and its tasks are placed elsewhere; a new
    # leader first grants every worker this much from its own start; seconds.
    node_down_grace_s: float = 5.0
    # Slow full reconcile pass, the safety net behind the event-driven one; seconds.
    full_pass_interval_s: float = 10.0
    # Task status updates from workers are merged per task and proposed together at most this often;
    # seconds (0 proposes each batch as soon as the previous one committed).
    status_flush_interval_s: float = 0.0
    # Terminal tasks kept per service slot for `service ps` history; older ones are deleted.
    task_history_per_slot: int = 5
    # Restart backoff: a slot whose task failed again within restart_window_s of starting waits
    # restart_backoff_initial_s, doubled per further failure up to restart_backoff_max_s, on top of the
    # service's own restart delay; seconds.
    restart_window_s: float = 10.0
    restart_backoff_initial_s: float = 0.5
    restart_backoff_max_s: float = 10.0
    # A pass woken by a change starts no sooner than this many times the previous pass's planning time
    # after that pass ended, so API requests are served between passes while changes keep coming (1.0:
    # the reconcile loop takes at most about half of the event loop); a ratio, 0 disables. Passes woken
    # by a plan's wake_at or by full_pass_interval_s are not held back.
    pass_pacing: float = 1.0
    # A pass woken by a change first lets the proposals waiting for their answers get them (their
    # apply is what woke it; planning first would hold their answers back on the event loop), but
    # waits for that at most this long, since a steady stream of writes always has one waiting;
    # seconds, 0 disables.
    answers_first_max_s: float = 0.005
    # A held session call returns for a change of the service endpoints alone at most this often per
    # worker (it still returns at once for its assignments, a log request or a volume removal). A
    # service of a thousand tasks being created changes its endpoints at every commit, and every
    # answer carries the whole table, which the worker checks and writes out: without a floor that
    # work grows with the square of the service's size. Well below a second, so names still follow
    # the replicas within one; seconds, 0 answers at every change.
    endpoints_interval_s: float = 0.1
    # Task updates in one SetTaskStatuses proposal (a flush of more is proposed in several), keeping
    # each far below raft max_entry_bytes; updates.
    status_batch_max: int = 1000
    # Status updates from one worker merged and waiting for the next flush at most (distinct tasks:
    # updates of one task are merged); a worker past it is answered 503 until the flush; updates.
    status_pending_per_node_max: int = 5000
    # A worker's reported volumes that could not be written (no quorum, a manager too old for the
    # command) are tried again on one of its calls at most this often; seconds.
    volume_report_retry_s: float = 10.0

    def validate(self) -> None:
        _require_positive(
            self, "heartbeat_period_s", "node_down_grace_s", "full_pass_interval_s", "volume_report_retry_s"
        )
        if not math.isfinite(self.pass_pacing) or self.pass_pacing < 0:
            raise ConfigError(f"pass_pacing must be 0 or more, got {self.pass_pacing!r}")
        if not math.isfinite(self.endpoints_interval_s) or self.endpoints_interval_s < 0:
            raise ConfigError(f"endpoints_interval_s must be 0 or more, got {self.endpoints_interval_s!r}")
        if not math.isfinite(self.answers_first_max_s) or self.answers_first_max_s < 0:
            raise ConfigError(f"answers_first_max_s must be 0 or more, got {self.answers_first_max_s!r}")
        if self.node_down_grace_s <= self.heartbeat_period_s:
            raise ConfigError(
                f"node_down_grace_s ({self.node_down_grace_s} s) must be longer than "
                f"heartbeat_period_s ({self.heartbeat_period_s} s)",
                fields=("node_down_grace_s", "heartbeat_period_s"),
            )
        if self.task_history_per_slot < 0:
            raise ConfigError("task_history_per_slot must not be negative")
        if self.status_batch_max <= 0 or self.status_pending_per_node_max <= 0:
            raise ConfigError("status_batch_max and status_pending_per_node_max must be greater than 0")


# -- manager daemon ---------------------------------------------------------------------------------

# Port of the HTTP API (`--listen-addr`, `--advertise-addr` without a port) and the CLI's default target.
DEFAULT_API_PORT = 8080
# Port of the Raft transport on the advertise host (`--raft-addr`).
DEFAULT_RAFT_PORT = 7946
# Prometheus /metrics, /health and /ready; loopback by default so metrics are not exposed by accident.
DEFAULT_METRICS_ADDR = "127.0.0.1:9090"
DEFAULT_LISTEN_ADDR = f"0.0.0.0:{DEFAULT_API_PORT}"
# What client commands talk to when neither --manager nor WARREN_MANAGER is given.
DEFAULT_MANAGER = f"127.0.0.1:{DEFAULT_API_PORT}"
MANAGER_ENV = "WARREN_MANAGER"


def default_data_dir() -> str:
    """`/var/lib/warren` as root, else `$XDG_DATA_HOME/warren` (`~/.local/share/warren`)."""
    import os

    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return "/var/lib/warren"
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "warren")


@dataclass(frozen=True, slots=True)
class SecuritySettings:
    """Certificate lifetimes and renewal (docs/security.md)."""

    # The cluster CA certificate made by `cluster init` is valid this long; seconds.
    ca_lifetime_s: float = 20 * 365 * 24 * 3600.0
    # The admin client certificate `cluster init` writes for the CLI is valid this long; seconds.
    admin_cert_lifetime_s: float = 365 * 24 * 3600.0
    # A node renews its certificate once this fraction of its lifetime has passed.
    renew_after_fraction: float = 0.5
    # A renewal that failed (no leader reachable) is tried again after this long; seconds.
    renew_retry_s: float = 5.0
    # Fetching the CA certificate before a join gives up after this long; seconds.
    ca_fetch_timeout_s: float = 10.0


SECURITY = SecuritySettings()


@dataclass(frozen=True, slots=True)
class EventSettings:
    """The cluster event stream (GET /v1/events, warren.store.events): what each manager keeps in
    memory, and how it streams."""

    # Each manager keeps the last this many events...
    max_events: int = 10_000
    # ...and none older than this; seconds.
    max_age_s: float = 3600.0
    # A request without `limit` gets at most this many events; `limit` may not exceed max_limit.
    default_limit: int = 1000
    max_limit: int = 10_000
    # A followed stream sends a comment line this often while no event comes, so proxies and clients
    # see it alive; seconds.
    keepalive_s: float = 15.0
    # Events queued for one followed stream whose reader is slow; beyond, the stream ends with an
    # `overflow` event and the client resumes from its last id.
    stream_queue: int = 1000
    # The leader notes a manager its replication has not heard from for this long as unreachable
    # (warren.manager.peerwatch), looking every peer_check_s; seconds.
    unreachable_after_s: float = 3.0
    peer_check_s: float = 1.0
    # At most one reachability note per manager this often, so a flapping link cannot flood the log;
    # seconds.
    note_interval_s: float = 30.0

    def validate(self) -> None:
        positive = (self.max_age_s, self.keepalive_s, self.unreachable_after_s, self.peer_check_s)
        if self.max_events < 1 or self.stream_queue < 1 or min(positive) <= 0 or self.note_interval_s < 0:
            raise ConfigError("events: every bound and period must be positive")
        if not 1 <= self.default_limit <= self.max_limit:
            raise ConfigError("events: default_limit must be between 1 and max_limit")


@dataclass(frozen=True, slots=True)
class ManagerSettings:
    """How a manager daemon runs: addresses, data dir, timers and API limits."""

    # Where the HTTP API listens ("host:port").
    listen_addr: str = DEFAULT_LISTEN_ADDR
    # The API address other managers, workers and clients use to reach this one ("host:port");
    # None: the listen address, or 127.0.0.1 if that is a wildcard.
    advertise_addr: str | None = None
    # Raft transport address ("host:port"); None: the advertise host at DEFAULT_RAFT_PORT.
    raft_addr: str | None = None
    # Prometheus metrics and health endpoints ("host:port").
    metrics_addr: str = DEFAULT_METRICS_ADDR
    # Where warren.db, the Raft log, snapshots and node.json live; None: default_data_dir().
    data_dir: str | None = None
    # Run no local worker next to the manager (by default a manager also runs tasks: "hybrid").
    manager_only: bool = False
    # Runtime of the local worker (one of RUNTIMES); see WorkerSettings.runtime.
    local_worker_runtime: str = "auto"
    # Host access the local worker allows; see WorkerSettings.allow_privileged, allow_devices, allow_binds.
    local_worker_allow_privileged: bool = False
    local_worker_allow_devices: tuple[str, ...] = ()
    local_worker_allow_binds: tuple[str, ...] = ()
    raft: RaftSettings = RaftSettings()
    orchestrator: OrchestratorSettings = OrchestratorSettings()
    events: EventSettings = EventSettings()

    # A join token is valid for this long after it is issued; seconds.
    join_token_ttl_s: float = 24 * 3600.0
    # Node certificates this manager signs are valid this long (`--cert-expiry`); nodes renew them
    # automatically (SecuritySettings.renew_after_fraction); seconds.
    node_cert_lifetime_s: float = 7 * 24 * 3600.0
    # Largest request body the API accepts; bytes. Larger bodies get 413.
    max_request_bytes: int = 1 * MIB
    # Largest secret value (`warren secret create`); bytes. Its base64 must fit in a request body and
    # its sealed form in a Raft entry (checked by validate()).
    max_secret_bytes: int = 500 * 1024
    # Largest config (`warren config create`); bytes. Stored as it is, but sent in base64 like a secret,
    # so the same bound of a request body and a Raft entry holds (checked by validate()).
    max_config_bytes: int = 500 * 1024
    # A follower forwarding a write to the leader gives up after this long; seconds.
    forward_timeout_s: float = 10.0
    # `cluster info` asks every other manager for /v1/ready; one that does not answer within this is
    # reported unreachable; seconds.
    probe_timeout_s: float = 0.5
    # On SIGTERM a leader hands leadership to the most up-to-date voter within this long before exiting;
    # seconds.
    shutdown_transfer_timeout_s: float = 3.0
    # A warning or error repeated within this long is logged once, then counted; seconds.
    log_repeat_window_s: float = 10.0
    # Open HTTP requests get this long to finish on shutdown; seconds.
    shutdown_grace_s: float = 5.0
    # 503 answers carry `Retry-After` with this many seconds.
    retry_after_s: int = 1
    # A write that is not committed within this long answers 503 (no quorum); it may still commit
    # later, and the message says so; seconds.
    write_timeout_s: float = 5.0
    # /ready stays true while applying is at most this many entries behind the commit index; entries.
    ready_apply_lag: int = 100
    # Start-up waits this long for a leader to be known (a founder elects itself at once); seconds.
    startup_leader_timeout_s: float = 30.0
    # A join's promotion waits this long for the new manager to catch up with the log; seconds.
    promote_timeout_s: float = 120.0

    def validate(self) -> None:
        """Raise ConfigError naming the field if an address, limit or timer is impossible."""
        for name in ("listen_addr", "advertise_addr", "raft_addr", "metrics_addr"):
            value = getattr(self, name)
            if value is not None:
                split_host_port(value, field=name)
        _require_positive(
            self,
            "write_timeout_s",
            "startup_leader_timeout_s",
            "promote_timeout_s",
            "join_token_ttl_s",
            "node_cert_lifetime_s",
            "forward_timeout_s",
            "probe_timeout_s",
            "shutdown_transfer_timeout_s",
            "shutdown_grace_s",
        )
        if self.max_request_bytes <= 0 or self.retry_after_s <= 0:
            raise ConfigError("max_request_bytes and retry_after_s must be greater than 0")
        # base64 (4 bytes per 3) plus the JSON around it; the sealed value adds 29 bytes before base64.
        for name, overhead in (("max_secret_bytes", 29), ("max_config_bytes", 0)):
            limit = getattr(self, name)
            encoded = 4 * math.ceil((limit + overhead) / 3) + 1024
            if limit <= 0 or encoded > min(self.max_request_bytes, self.raft.max_entry_bytes):
                raise ConfigError(
                    f"{name} ({limit}) must be greater than 0 and, in base64, fit in "
                    f"max_request_bytes ({self.max_request_bytes}) and raft max_entry_bytes "
                    f"({self.raft.max_entry_bytes})",
                    fields=(name, "max_request_bytes"),
                )
        if self.ready_apply_lag < 0:
            raise ConfigError(f"ready_apply_lag must not be negative, got {self.ready_apply_lag!r}")
        if self.local_worker_runtime not in RUNTIMES:
            raise ConfigError(
                f"runtime must be one of {', '.join(RUNTIMES)}, got {self.local_worker_runtime!r}"
            )
        _check_allowed_paths("allow_devices", self.local_worker_allow_devices)
        _check_allowed_paths("allow_binds", self.local_worker_allow_binds)
        if len(self.local_worker_allow_binds) > MAX_ALLOW_BINDS:
            raise ConfigError(
                f"allow_binds: at most {MAX_ALLOW_BINDS} paths, got {len(self.local_worker_allow_binds)}"
            )
        self.raft.validate()
        self.orchestrator.validate()
        self.events.validate()

    @property
    def api_advertise(self) -> str:
        """The API address advertised to the cluster."""
        if self.advertise_addr is not None:
            host, port = split_host_port(self.advertise_addr, field="advertise_addr")
            return join_host_port(host, port)
        host, port = split_host_port(self.listen_addr, field="listen_addr")
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        return join_host_port(host, port)

    @property
    def raft_advertise(self) -> str:
        """The Raft transport address (defaults to the advertise host at DEFAULT_RAFT_PORT)."""
        if self.raft_addr is not None:
            host, port = split_host_port(self.raft_addr, field="raft_addr")
            return join_host_port(host, port)
        host, _ = split_host_port(self.api_advertise, field="advertise_addr")
        return join_host_port(host, DEFAULT_RAFT_PORT)

    @property
    def resolved_data_dir(self) -> str:
        return self.data_dir if self.data_dir is not None else default_data_dir()


# -- bounds on what the network feeds a manager (docs/security.md) ---------------------------------

# The log relay (warren/manager/logrelay.py, the route POST /v1/dispatcher/logs/{id}).
# Largest log chunk a worker may POST; bytes (a larger one is answered 413). Workers send at most
# warren.worker.client.LOG_CHUNK_BYTES (the same 64 KiB) per POST.
LOG_CHUNK_MAX_BYTES = 64 * 1024
# Output queued on the leader for one `service logs` client at most; bytes.
LOG_STREAM_QUEUE_BYTES = 1 * MIB
# A chunk that finds its client's queue full waits this long for the client to read, then is dropped
# (the client sees "[warren: N bytes dropped]"); so also the longest a worker's log POST is held; seconds.
LOG_STREAM_WAIT_S = 1.0
# Lines longer than this are split when a client reads several tasks' output (each line is prefixed
# with its task, so a partial line is kept until its newline: this bounds it); bytes.
LOG_LINE_MAX_BYTES = 16 * 1024


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """What one HTTP server of a manager (the API, metrics) accepts (warren/daemons/servers.py).

    A connection over a cap is closed as soon as it is accepted, before any TLS, so that no client can
    hold the process's descriptors: the Raft transport, worker sessions, peers, the store and the logs
    share the same RLIMIT_NOFILE.
    """

    # A TLS client must complete its handshake within this long, or it is disconnected; seconds.
    tls_handshake_timeout_s: float = 5.0
    # A connection with no request in progress is closed after this long, before its first request as
    # after its last (uvicorn's keep-alive timeout); seconds.
    idle_timeout_s: float = 5.0
    # A request's line and headers must all arrive within this long of its first byte, or the
    # connection is closed (a client trickling its headers cannot hold a connection for ever); seconds.
    request_head_timeout_s: float = 10.0
    # Connections from one peer address at once (and at most a quarter of the server's total cap);
    # more are closed at once.
    max_per_peer: int = 256
    # Connections of one server at once; when full, an idle connection (in its TLS handshake, or between
    # requests) of the address with the most is closed to admit a new one; refused if none is idle.
    max_connections: int = 10_000
    # ... and at most this fraction of the process's descriptor limit (soft RLIMIT_NOFILE), so the API
    # and metrics servers together leave at least half of it to everything else; a fraction.
    nofile_fraction: float = 0.25

    def validate(self) -> None:
        _require_positive(self, "tls_handshake_timeout_s", "idle_timeout_s", "request_head_timeout_s")
        if self.max_per_peer <= 0 or self.max_connections <= 0:
            raise ConfigError("max_per_peer and max_connections must be greater than 0")
        if not 0 < self.nofile_fraction <= 1:
            raise ConfigError(f"nofile_fraction must be in (0, 1], got {self.nofile_fraction!r}")

    def per_peer_cap(self, total: int) -> int:
        """The cap per peer address of a server whose total cap is `total`."""
        return max(1, min(self.max_per_peer, total // 4))

    def total_cap(self, nofile: int | None) -> int:
        """The connection cap of one server in a process allowed `nofile` descriptors (None: no limit)."""
        if nofile is None:
            return self.max_connections
        return max(1, min(self.max_connections, int(nofile * self.nofile_fraction)))


# -- workers --------------------------------------------------------------------------------------


# `--runtime` of a worker: auto = docker. The process runtime runs unconfined host commands as the
# worker's user, so a worker offers it only when asked: `process` alone, or `docker,process` for both.
RUNTIMES = ("auto", "docker", "process", "docker,process")


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    """How a worker agent runs (`warren worker start`, or the local worker of a hybrid manager)."""

    # Managers to talk to ("host:port", tried in turn; any manager forwards to the leader).
    managers: tuple[str, ...] = (DEFAULT_MANAGER,)
    # worker.db (assignment cache), node.json (identity), process-runtime task dirs; None: the
    # default data dir + "/worker".
    data_dir: str | None = None
    # What runs tasks (one of RUNTIMES): auto = docker (the Docker Engine must answer); process (plain
    # host processes) only when named.
    runtime: str = "auto"
    # Node labels matched by placement constraints (node.labels.K==V).
    labels: tuple[tuple[str, str], ...] = ()
    # Address at which this worker's published ports are reached; None: the host of the address this
    # worker uses to reach the manager.
    advertise_host: str | None = None
    # A join or status request to a manager may take this long; seconds.
    request_timeout_s: float = 5.0
    # A session call unanswered this long beyond its hold (the heartbeat period) is abandoned and the
    # next manager tried. It must stay well under the node-down grace (5 s): a frozen or cut-off
    # manager accepts the connection and never answers, and the new leader writes a worker down that
    # has not found it by then; seconds.
    session_timeout_s: float = 2.0
    # After every manager failed, wait this long before trying them all again (autonomy meanwhile);
    # seconds, doubled up to retry_max_delay_s.
    retry_initial_delay_s: float = 0.2
    retry_max_delay_s: float = 2.0
    # A task's container gets this long to stop after SIGTERM before SIGKILL, unless its service says
    # otherwise; seconds.
    stop_timeout_s: float = 10.0
    # A first join keeps trying the managers (none answers, no leader yet) for this long; seconds.
    join_timeout_s: float = 30.0
    # Cut off from every manager, a crashed task is restarted in place after its restart policy's delay
    # plus this backoff, doubled per local restart of the task up to local_restart_backoff_max_s (a
    # task that crashes at once must not spin); seconds.
    local_restart_backoff_s: float = 0.5
    local_restart_backoff_max_s: float = 10.0
    # A warning or error the worker daemon repeats within this long is logged once, then counted;
    # seconds.
    log_repeat_window_s: float = 10.0
    # Where the secrets of this worker's tasks are written, one directory per task (values are kept in
    # memory otherwise, never on disk): it must be on tmpfs or ramfs, or tasks that use secrets fail.
    # None: default_secrets_dir(node), a private directory under /dev/shm.
    secrets_dir: str | None = None
    # Host access this worker allows its tasks: privileged containers (every capability and device),
    # and the devices at or under these paths (absolute, normalised: no "..", no "//"; a task's device
    # must still be inside one once symlinks are resolved). None allowed by default.
    allow_privileged: bool = False
    allow_devices: tuple[str, ...] = ()
    # Host paths this worker lets its tasks bind-mount (`--mount type=bind`): these, or any under them,
    # checked as for devices (absolute, normalised; still inside once symlinks are resolved). None by
    # default.
    allow_binds: tuple[str, ...] = ()
    # Listing this worker's volumes for its session (an engine call) is given up after this long, and
    # tried again before the next call: a hung engine must not delay the heartbeat; seconds.
    volume_list_timeout_s: float = 1.0
    # Where this worker's DNS server (warren.worker.dns: service names, other names forwarded) listens,
    # "IP:PORT"; port 0: one the system picks (several workers share a host in tests); None: no server
    # (`worker start --dns-addr off`). Process tasks are told the bound address in WARREN_DNS.
    dns_addr: str | None = "127.0.0.1:0"
    # The TTL of the service names' answers: they follow the cluster within it; seconds.
    dns_ttl_s: int = 1
    # A name that is not the cluster's is forwarded to the host's nameservers, all of them within this
    # long, else SERVFAIL; seconds.
    dns_forward_timeout_s: float = 2.0
    # At most this many forwards under way at once (more get SERVFAIL at once).
    dns_max_forwards: int = 64
    # Where this worker listens on the cluster's published ingress ports (warren.worker.ingress: each
    # connection is forwarded to a replica of the port's service, wherever it runs): an IP address of
    # this host ("0.0.0.0": every IPv4 address); None: this worker forwards nothing (`worker start
    # --ingress-host off`).
    ingress_host: str | None = "0.0.0.0"
    # A replica that does not accept a forwarded connection within this long is given up for the
    # next one; seconds.
    ingress_connect_timeout_s: float = 1.0
    # At most this many connections forwarded at once (two sockets each); a client beyond them is
    # closed at once.
    ingress_max_connections: int = 4096
    # A replica that refused or timed out a forwarded connection is tried after the others for this long
    # (or until it is reached again, or leaves the table): a replica on a cut-off node, still listed
    # until the leader writes the node down (5 s), costs one client the connect timeout, not half of
    # them; seconds (0: off).
    ingress_suspect_s: float = 10.0
    # The Docker bridge network this worker's containers join (those on the default network, not
    # `--network host`), whose gateway (an address of this host) the DNS server also listens on, port 53,
    # set as the containers' resolver: a name, "{node}" replaced by this node's name (the result kept to
    # Docker's name rules, at most DOCKER_NETWORK_MAX_LEN characters); None: none (containers on Docker's
    # default bridge, no service names; `worker start --docker-network off`).
    docker_network: str | None = "warren-{node}"

    def validate(self) -> None:
        self.dns_bind()
        self.docker_network_name("node")
        if self.dns_ttl_s < 0 or self.dns_max_forwards < 1:
            raise ConfigError("dns_ttl_s must be >= 0 and dns_max_forwards >= 1")
        if self.ingress_host is not None:
            import ipaddress

            try:
                ipaddress.ip_address(self.ingress_host)
            except ValueError:
                raise ConfigError(f"ingress_host {self.ingress_host!r} must be an IP address of this host "
                                  "(0.0.0.0: all of them) or off") from None
        if not 0 <= self.ingress_suspect_s <= 3600:
            raise ConfigError(f"ingress_suspect_s must be from 0 to 3600, got {self.ingress_suspect_s!r}")
        if isinstance(self.ingress_max_connections, bool) or self.ingress_max_connections < 1:
            raise ConfigError("ingress_max_connections must be at least 1, got "
                              f"{self.ingress_max_connections!r}")
        if self.secrets_dir is not None and not self.secrets_dir.startswith("/"):
            raise ConfigError(f"secrets_dir must be an absolute path, got {self.secrets_dir!r}")
        _check_allowed_paths("allow_devices", self.allow_devices)
        _check_allowed_paths("allow_binds", self.allow_binds)
        if len(self.allow_binds) > MAX_ALLOW_BINDS:
            raise ConfigError(f"allow_binds: at most {MAX_ALLOW_BINDS} paths, got {len(self.allow_binds)}")
        if not self.managers:
            raise ConfigError("a worker needs at least one manager address (--manager)")
        for addr in self.managers:
            split_host_port(addr, field="manager")
        if self.runtime not in RUNTIMES:
            raise ConfigError(f"runtime must be one of {', '.join(RUNTIMES)}, got {self.runtime!r}")
        _require_positive(
            self,
            "request_timeout_s",
            "session_timeout_s",
            "retry_initial_delay_s",
            "retry_max_delay_s",
            "stop_timeout_s",
            "join_timeout_s",
            "local_restart_backoff_s",
            "local_restart_backoff_max_s",
            "volume_list_timeout_s",
            "dns_forward_timeout_s",
            "ingress_connect_timeout_s",
        )

    def dns_bind(self) -> tuple[str, int] | None:
        """(IP, port) the DNS server binds (None: off); ConfigError for a bad dns_addr."""
        if self.dns_addr is None:
            return None
        import ipaddress

        host, sep, port = self.dns_addr.strip().rpartition(":")
        host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        if not sep:
            raise ConfigError(f"dns_addr {self.dns_addr!r} must be IP:PORT with a port from 0 to 65535")
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ConfigError(f"dns_addr {self.dns_addr!r} must be IP:PORT (an IP address this host has, "
                              "port 0 for any free one) or off") from None
        if not port.isdigit() or not 0 <= int(port) < 65536:
            raise ConfigError(f"dns_addr {self.dns_addr!r} must be IP:PORT with a port from 0 to 65535")
        return host, int(port)

    def docker_network_name(self, node: str) -> str | None:
        """The Docker network of node `node`'s containers (None: off): docker_network with "{node}"
        replaced, characters Docker refuses replaced by "_", at most DOCKER_NETWORK_MAX_LEN long;
        ConfigError for a template that cannot make a name."""
        template = self.docker_network
        if template is None:
            return None
        rest = template.replace(NODE_PLACEHOLDER, "")
        if not template or len(template) > DOCKER_NETWORK_MAX_LEN or not _DOCKER_NAME_CHARS.fullmatch(rest):
            raise ConfigError(
                f"docker_network {template!r} must be a Docker network name (letters, digits, '_', '.', '-', "
                f"at most {DOCKER_NETWORK_MAX_LEN} characters; {NODE_PLACEHOLDER} for the node's name) or off"
            )
        name = template.replace(NODE_PLACEHOLDER, _DOCKER_NAME_UNSAFE.sub("_", node))[:DOCKER_NETWORK_MAX_LEN]
        if not name[0].isalnum() or name in DOCKER_RESERVED_NETWORKS:
            reserved = ", ".join(DOCKER_RESERVED_NETWORKS)
            raise ConfigError(f"docker_network {template!r} gives {name!r}: a Docker network name must begin "
                              f"with a letter or digit and not be one of {reserved}")
        return name

    @property
    def resolved_data_dir(self) -> str:
        import os

        return self.data_dir if self.data_dir is not None else os.path.join(default_data_dir(), "worker")

    def resolved_secrets_dir(self, node: str) -> str:
        return self.secrets_dir if self.secrets_dir is not None else default_secrets_dir(node)


# docker_network: the placeholder replaced by the node's name, the longest name made (Docker sets no
# limit of its own; the bridge's interface name comes from the network's ID, not from this), the
# characters Docker takes in a name, and the names of its own networks (not ours to take).
NODE_PLACEHOLDER = "{node}"
DOCKER_NETWORK_MAX_LEN = 64
_DOCKER_NAME_CHARS = re.compile(r"[a-zA-Z0-9_.-]*")
_DOCKER_NAME_UNSAFE = re.compile(r"[^a-zA-Z0-9_.-]")
DOCKER_RESERVED_NETWORKS = ("bridge", "host", "none")

# At most this many paths in --allow-bind (and in a worker's reported allow_binds).
MAX_ALLOW_BINDS = 64
# An operator's labels on one node (`node update --label-add`): at most this many, in one request and
# on the node altogether (the state machine refuses a change past it).
MAX_NODE_LABELS = 256


def _check_allowed_paths(field: str, paths: tuple[str, ...]) -> None:
    """ConfigError unless every path is absolute and normalised: no '.', '..', '//' or trailing '/'
    (a worker's allowed paths are compared as text by the scheduler), and no control character."""
    import posixpath

    for path in paths:
        normal = path.startswith("/") and not path.startswith("//") and posixpath.normpath(path) == path
        if not normal or not path.isprintable():
            raise ConfigError(
                f"{field}: {path!r} must be a normalised absolute path (no '.', '..', '//', trailing '/' "
                "or control characters)"
            )


# Base of the default secrets dirs: a tmpfs every Linux has. Per user and node, so that workers sharing
# a host (tests, a hybrid manager next to a worker) never touch each other's.
SECRETS_TMPFS = "/dev/shm"


def default_secrets_dir(node: str) -> str:
    """`/dev/shm/warren-<uid>/<node>`: on tmpfs, so secret values never reach a disk."""
    import os

    uid = os.geteuid() if hasattr(os, "geteuid") else 0
    return os.path.join(SECRETS_TMPFS, f"warren-{uid}", node)


@dataclass(frozen=True, slots=True)
class RuntimeSettings:
    """Timers and limits of the container runtimes (warren/runtime)."""

    # `docker_available()` and `--runtime auto` count the Docker Engine as absent if it does not answer
    # a ping within this long; seconds.
    docker_ping_timeout_s: float = 2.0
    # One ordinary Docker API call (create, inspect, stop...; not streams) may take this long; seconds.
    # A stop waits its own grace period on top.
    docker_api_timeout_s: float = 30.0
    # Threads of a worker's Docker API calls: a stop holds one for the task's whole grace period; threads.
    docker_api_threads: int = 32
    # Pulling an absent image gives up when the engine says nothing for this long (e.g. while it
    # cannot reach a registry), or after image_pull_timeout_s in total; seconds.
    image_pull_stall_s: float = 15.0
    image_pull_timeout_s: float = 300.0
    # After the engine's event stream breaks (engine restart), reconnect after this long, doubled per
    # failed attempt up to events_retry_max_s; seconds.
    events_retry_initial_s: float = 0.1
    events_retry_max_s: float = 2.0
    # Process runtime: a followed log file is read again this often while its process lives, and a
    # running task's log file is checked this often for rotation past process_log_max_bytes; seconds.
    # Exits are never polled: they come from the process itself (wait / pidfd).
    log_follow_interval_s: float = 0.2
    log_rotate_check_s: float = 10.0
    # Output kept per process-runtime task log file before it is rotated; bytes.
    process_log_max_bytes: int = 10 * MIB


# -- CLI client -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClientSettings:
    """How the CLI talks to a manager."""

    # One HTTP request may take this long; seconds.
    request_timeout_s: float = 10.0
    # An answer read whole (not a stream: logs, backups) may be this large; a larger one is refused, not
    # read into memory (the largest the API sends, a list of every task, is far smaller); bytes.
    max_answer_bytes: int = 64 * 1024 * 1024
    # While there is no leader (503) or the manager does not answer, the CLI retries for this long in
    # total; seconds.
    retry_deadline_s: float = 15.0
    # First retry delay, doubled after each attempt up to retry_max_delay_s; seconds.
    retry_initial_delay_s: float = 0.1
    retry_max_delay_s: float = 1.0
    # `warren volume rm` waits this long for the node's worker to remove the volume (a worker that is up
    # does on its next session call, at once); seconds. It looks every volume_remove_poll_s seconds.
    volume_remove_wait_s: float = 30.0
    volume_remove_poll_s: float = 0.25
    # `service create|update|scale|rollback` wait for the change to converge unless --detach: they read
    # the service and its tasks every wait_poll_s seconds (docs/decisions.md, issue 20: a poll, not the
    # event stream); seconds.
    wait_poll_s: float = 0.5
    # A wait gives up (exit 1, the change stays and goes on) once a task of the new spec has been
    # pending this long with nothing else changing: no node can run it now; seconds.
    wait_pending_s: float = 60.0
    # A wait fails once this many tasks of the new spec failed since the change (a restart loop);
    # a rolling update's own failure action (pause, rollback) is reported as soon as it happens.
    wait_failures: int = 3
    # `warren events -f`: a followed stream silent for this long (the manager sends a keep-alive every
    # EventSettings.keepalive_s) is taken for dead and resumed on another manager; seconds.
    events_idle_s: float = 40.0


# -- the dashboard (`warren dashboard`) --------------------------------------------------------------

DEFAULT_DASHBOARD_PORT = 8090
DEFAULT_DASHBOARD_BIND = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class DashboardSettings:
    """The local web server of `warren dashboard` (warren/dashboard): it proxies the pages' API calls to
    the managers with this user's admin certificate (docs/dashboard.md)."""

    # Where it listens; a non-loopback address needs --allow-remote (the proxy holds an admin certificate).
    bind: str = DEFAULT_DASHBOARD_BIND
    port: int = DEFAULT_DASHBOARD_PORT
    # Bytes of random in the per-run token printed in the URL (exchanged for a cookie).
    token_bytes: int = 32
    # One proxied request (not a stream) may take this long at a manager; seconds. A manager that does
    # not answer within connect_timeout_s is skipped for the next one.
    request_timeout_s: float = 10.0
    connect_timeout_s: float = 2.0
    # A followed event stream with no byte for this long is taken for dead and ended, so the browser
    # reconnects (through another manager if need be); the events API sends a keep-alive every 15 s.
    stream_idle_timeout_s: float = 40.0
    # Largest request body the proxy forwards (a scale is a few bytes); bytes.
    max_body_bytes: int = 1024
    # Largest answer read whole (lists of nodes, services, tasks); a larger one is a 502; bytes.
    max_answer_bytes: int = 16 * 1024 * 1024

    def validate(self) -> DashboardSettings:
        if not 0 <= self.port < 65536:  # 0: any free port
            raise ConfigError(f"dashboard port must be 0-65535, not {self.port}")
        if self.token_bytes < 16:
            raise ConfigError("dashboard token_bytes must be at least 16")
        if self.request_timeout_s <= 0 or self.connect_timeout_s <= 0 or self.stream_idle_timeout_s <= 0:
            raise ConfigError("dashboard timeouts must be positive")
        return self


# -- the failover drill (`warren drill`) --------------------------------------------------------------

# Manager counts the drill forms (3 tolerates one failure, 5 two), runtimes of its worker, and how it
# fails the leader: sigkill (a crash), sigterm (a graceful stop: leadership is handed over first),
# sigstop (a frozen process, resumed with SIGCONT).
DRILL_MANAGER_COUNTS = (3, 5)
DRILL_RUNTIMES = ("process", "docker")
DRILL_KILLS = ("sigkill", "sigterm", "sigstop")


@dataclass(frozen=True, slots=True)
class DrillSettings:
    """`warren drill`: the throwaway cluster it forms on this machine, how it fails it, its budgets."""

    managers: int = 3
    # Runtime of the drill's one worker (DRILL_RUNTIMES); docker needs an engine that answers.
    runtime: str = "process"
    # Image of the service under the docker runtime (it must hold `sleep`); None: docker_image. The
    # process runtime runs the command directly and needs no image.
    image: str | None = None
    docker_image: str = "warren-busybox:latest"
    kill: str = "sigkill"
    # Each step must be done within this long (the first step: each manager, the worker and the
    # service in turn); seconds.
    step_timeout_s: float = 30.0
    # Where the managers' and the worker's data dirs and logs go (must be empty or absent; kept after
    # the drill); None: a fresh temporary directory, removed afterwards unless `keep`.
    data_dir: str | None = None
    keep: bool = False
    # The drill's service: its name, what its tasks run (a sleep outlasting any drill), its replicas,
    # and the replicas the write step scales it to.
    service: str = "drill-sleep"
    command: tuple[str, ...] = ("sleep", "1000000")
    replicas: int = 2
    scaled_replicas: int = 3
    # Managers listen on 127.0.0.<first_host + i> (i = 0, 1, ...), each on free ports.
    first_host: int = 20
    # Pause between two rounds of polling a condition; seconds. Bounds the timing resolution.
    poll_interval_s: float = 0.02
    # One probe of a manager (/v1/ready, /v1/cluster) may take this long; seconds.
    probe_timeout_s: float = 1.0
    # At the end, every process the drill started gets this long to be reaped after SIGKILL, and
    # Docker containers this long to be removed; seconds.
    cleanup_timeout_s: float = 10.0

    def validate(self) -> None:
        if self.managers not in DRILL_MANAGER_COUNTS:
            raise ConfigError(f"managers must be 3 or 5, got {self.managers!r}")
        if self.runtime not in DRILL_RUNTIMES:
            raise ConfigError(f"runtime must be one of {', '.join(DRILL_RUNTIMES)}, got {self.runtime!r}")
        if self.kill not in DRILL_KILLS:
            raise ConfigError(f"kill must be one of {', '.join(DRILL_KILLS)}, got {self.kill!r}")
        if self.image is not None and self.runtime != "docker":
            raise ConfigError(
                "image applies to the docker runtime only (process tasks run the command)",
                fields=("image", "runtime"),
            )
        if self.image is not None and not self.image.strip():
            raise ConfigError("image must not be empty")
        _require_positive(self, "step_timeout_s", "poll_interval_s", "probe_timeout_s", "cleanup_timeout_s")
        if not 1 <= self.replicas < self.scaled_replicas:
            raise ConfigError(
                f"replicas ({self.replicas}) must be at least 1 and less than scaled_replicas "
                f"({self.scaled_replicas})"
            )
        if not 1 <= self.first_host <= 254 - self.managers:
            raise ConfigError(f"first_host must leave room for {self.managers} hosts in 127.0.0.1-254")

    @property
    def service_image(self) -> str:
        """The service's image: the given or default one under docker; a placeholder for processes."""
        if self.runtime == "docker":
            return self.image if self.image is not None else self.docker_image
        return "none"




# -- the chaos suite's histories (warren.testing.workload, warren.testing.linearizability) -------------


@dataclass(frozen=True, slots=True)
class CheckerSettings:
    """How hard the linearizability checker tries before it answers "unknown" rather than hang."""

    # Model steps the search of one key's history may take; past it the key's verdict is "unknown". A
    # clean history takes about one step per operation per concurrent client (a 10-client history of
    # 4,000 operations on a key: ~20,000 steps); operations of unknown outcome multiply it.
    max_steps: int = 2_000_000
    # Searches (each within max_steps) spent shrinking an illegal key's history to a short witness.
    shrink_checks: int = 64

    def validate(self) -> None:
        _require_positive(self, "max_steps", "shrink_checks")


@dataclass(frozen=True, slots=True)
class WorkloadSettings:
    """The compare-and-set workload: registers (a label of a service each), clients, the mix of their
    operations and how long one may take before its outcome counts as unknown."""

    clients: int = 4
    registers: int = 3
    # Register i is the label `label` of the service `<service_prefix><i>` (replicas 0: no tasks).
    service_prefix: str = "reg-"
    label: str = "chaos.value"
    service_image: str = "warren-chaos-register:none"
    # Relative weights of a client's next operation: a default read, a `?consistent=true` read, or a
    # compare-and-set (a consistent read of the version, then an update with If-Match on it).
    default_read_weight: float = 1.0
    consistent_read_weight: float = 1.0
    cas_weight: float = 2.0
    # One request may take this long; past it the operation's outcome is unknown; seconds.
    request_timeout_s: float = 2.0
    # After an error a client turns to the next manager and waits this long first (no hot loop while
    # a cluster has no leader); seconds.
    error_pause_s: float = 0.05
    # Setting the registers up (creating the services, reading them back) may take this long; seconds.
    setup_timeout_s: float = 30.0

    def validate(self) -> None:
        _require_positive(self, "clients", "registers", "request_timeout_s", "setup_timeout_s")
        if min(self.default_read_weight, self.consistent_read_weight, self.cas_weight) < 0:
            raise ConfigError("operation weights must not be negative")
        if self.cas_weight == 0:
            raise ConfigError("cas_weight must be positive: a workload without writes checks nothing")
        if self.error_pause_s < 0:
            raise ConfigError(f"error_pause_s must not be negative, got {self.error_pause_s!r}")
        if not self.label or not self.service_prefix:
            raise ConfigError("label and service_prefix must not be empty",
                              fields=("label", "service_prefix"))
