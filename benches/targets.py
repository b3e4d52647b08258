"""What a run is judged against: issue 5's targets (met / missed per row) and the peers measured beside
Warren (Warren-to-peer ratios). Rows are found by key; a row that is absent gets no verdict, and a
target whose peer is absent checks only its absolute half and says so."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

Row = dict[str, Any]
Rows = Mapping[str, Row]
# met (True), missed (False) or cannot tell (None), and a note for the reader (or None)
Verdict = tuple[bool | None, str | None]
Check = Callable[[Row, Rows], Verdict]


def rows_of(run: Mapping[str, Any]) -> list[Row]:
    """Every row of every scenario of a run (or a latest.json), in table order."""
    out: list[Row] = []
    for scenario in run.get("scenarios", {}).values():
        if isinstance(scenario, dict):
            out += [r for r in scenario.get("rows", []) if isinstance(r, dict) and "key" in r]
    return out


# Rows timing a disruption until service is back: plotted together, and `compare` also compares their max.
RECOVERY_PREFIXES = (
    "leader_failover/",
    "client_failover/",
    "failover/",
    "etcd/3/failover-",
    "partition/leader",
    "containers/crash",
    "swarm/crash-",
    "worker_failure/",
)


def is_recovery(key: str) -> bool:
    return key.startswith(RECOVERY_PREFIXES)


@dataclass(frozen=True)
class Limits:
    """Issue 5's numbers (and the earlier issues' that still stand)."""

    commit_p50_ms: float = 1.0  # 3-node commit, sequential; ms
    commit_throughput_per_s: float = 30_000  # 3-node commit, 64 proposers; proposals/s
    failover_p50_ms: float = 600.0  # kill -9 of the leader, default timers; ms
    failover_max_ms: float = 1000.0  # the same, worst trial; ms
    graceful_max_ms: float = 100.0  # graceful leader shutdown, worst trial; ms
    graceful_p50_ms: float = 50.0  # the same, median (issue 18); ms
    api_leader_p50_ms: float = 1.5  # API write via the leader; ms
    api_leader_p99_ms: float = 5.0  # the same; ms
    api_follower_p50_ms: float = 3.0  # API write via a follower (forwarded); ms
    api_forward_extra_ms: float = 1.0  # a forwarded write's p50 over the leader's, same run (issue 18); ms
    container_crash_max_ms: float = 2000.0  # container crash → replacement running; ms
    worker_failure_max_ms: float = 15_000.0  # worker failure → its tasks running elsewhere; ms
    schedule_1000_max_ms: float = 30_000.0  # 1,000 replicas on process-runtime workers running; ms
    schedule_4000_max_ms: float = 12_000.0  # 4,000 replicas on process-runtime workers running (issue 18); ms
    # Time per replica (p50) of every schedule row at most this fraction above the smallest row's: cost
    # grows with the work, not faster (issue 18's "flat ±30 %", 250 to 4,000 replicas). Below it is no
    # miss: that is the create's fixed costs (API call, first session answer, 20 ms poll) spread over
    # more replicas, and the note shows it; a ratio.
    schedule_per_replica_spread: float = 0.3
    planner_idle_p99_ms: float = 20.0  # leader's reconcile pass, 10,000 tasks, nothing changed (issue 18); ms
    manager_rss_mb: float = 70.0  # idle manager resident memory (issue 14; was 80); MB
    worker_rss_mb: float = 40.0  # idle worker resident memory (issue 14; was 50); MB
    cli_service_ls_p50_ms: float = 150.0  # `warren service ls`, whole process, 1 manager (issue 18); ms
    idle_cpu_pct: float = 0.5  # idle CPU of a manager (3-node cluster) and of a worker; % of one core
    bridge_speedup: float = 2.0  # compiled bridge's apply-loop throughput over the pure one's (issue 18); ×


LIMITS = Limits()


# -- building blocks --------------------------------------------------------------------------------


def _ms(limit: float) -> str:
    return f"{limit / 1000:g} s" if limit >= 1000 else f"{limit:g} ms"


def _measured_ms(value: float) -> str:
    if value >= 1000:
        return f"{value / 1000:.2f} s"
    return f"{value:.3f} ms" if value < 10 else f"{value:.0f} ms"


def at_most(field: str, limit: float) -> Check:
    """row[field] ≤ limit; a row with failed trials misses it when the field is a worst case."""

    def check(row: Row, _: Rows) -> Verdict:
        value = row.get(field)
        if field == "max_ms" and _failed_trials(row):
            return False, f"{_failed_trials(row)} trial(s) never recovered"
        if value is None:
            return None, None
        return bool(value <= limit), None

    return check


def flat_per_replica(prefix: str, spread: float) -> Check:
    """Every row whose key starts with `prefix` has a `per_replica_ms` at most `spread` (a fraction)
    above the smallest such row's (by the number after the prefix); cannot tell with fewer than two
    such rows. The note gives each row's ratio."""

    def check(row: Row, rows: Rows) -> Verdict:
        sized = sorted(
            (int(key[len(prefix) :]), r["per_replica_ms"])
            for key, r in rows.items()
            if key.startswith(prefix) and key[len(prefix) :].isdigit() and r.get("per_replica_ms")
        )
        if len(sized) < 2:
            return None, "fewer than two sizes measured"
        base = sized[0][1]
        ratios = [(n, value / base) for n, value in sized]
        note = "per replica vs " + f"{sized[0][0]}: " + ", ".join(f"{n} {r:.2f}×" for n, r in ratios[1:])
        return all(r <= 1 + spread for _, r in ratios), note

    return check


def within_of(other: str, field: str, extra: float) -> Check:
    """row[field] ≤ the `other` row's field + `extra`, both from the same run; cannot tell without it."""

    def check(row: Row, rows: Rows) -> Verdict:
        value, base = row.get(field), rows.get(other, {}).get(field)
        if value is None or base is None:
            return None, f"no {other} to compare with"
        return bool(value <= base + extra), f"{value - base:+.3f} ms over {other}"

    return check


def all_of(*checks: Check) -> Check:
    """Met if every part is met; missed if any is missed; otherwise cannot tell. Notes are joined."""

    def check(row: Row, rows: Rows) -> Verdict:
        results = [c(row, rows) for c in checks]
        notes = "; ".join(n for _, n in results if n)
        oks = [ok for ok, _ in results]
        verdict = False if False in oks else (None if None in oks else True)
        return verdict, notes or None

    return check


def below_peers(
    peer: str, select: Callable[[str], bool], fields: tuple[str, ...], strict: bool, alone: bool = False
) -> Check:
    """Each of `fields` below (or, not strict, at most) that field of every selected peer row. No peer
    row with numbers: cannot tell if this is the whole target (`alone`), else met, with a note that only
    the absolute half was checked."""

    def check(row: Row, rows: Rows) -> Verdict:
        peers = [r for key, r in rows.items() if select(key) and all(r.get(f) is not None for f in fields)]
        if not peers:
            if alone:
                return None, f"{peer} not measured"
            return True, f"{peer} not measured: only the absolute half was checked"
        if any(row.get(f) is None for f in fields):
            return None, None
        ok = all(row[f] < p[f] if strict else row[f] <= p[f] for p in peers for f in fields)
        described = "; ".join(
            f"{p['key']} " + ", ".join(f"{f.removesuffix('_ms')} {_measured_ms(p[f])}" for f in fields)
            for p in peers
        )
        return ok, f"{peer}: {described}"

    return check


def _throughput(row: Row, rows: Rows) -> Verdict:
    mine = row.get("throughput_per_s")
    if mine is None:
        return None, None
    peers = [
        r["throughput_per_s"]
        for key, r in rows.items()
        if key.startswith("pysyncobj/3") and key.endswith("/concurrent") and r.get("throughput_per_s")
    ]
    enough = bool(mine >= LIMITS.commit_throughput_per_s)
    if not peers:
        return enough, "PySyncObj not measured: only the 30,000/s half was checked"
    return enough and bool(mine >= max(peers)), f"best PySyncObj 3-node throughput: {max(peers):,.0f}/s"


def _failed_trials(row: Row) -> int:
    failed = row.get("failed_trials") or 0
    # failover.py's rows before trial_row: a note, no count
    if not failed and row.get("key") == "failover/3" and "without a commit" in str(row.get("note", "")):
        return 1
    return int(failed)


def _bridge_speedup(row: Row, rows: Rows) -> Verdict:
    pure = rows.get("bridge/apply/python", {}).get("throughput_per_s")
    mine = row.get("throughput_per_s")
    if not pure or mine is None:
        return None, "pure bridge not measured"
    return bool(mine >= LIMITS.bridge_speedup * pure), f"{mine / pure:.2f}× the pure bridge, same run"


def _etcd_sigkill(key: str) -> bool:
    return key.startswith("etcd/3/failover-") and not key.endswith(("-sigstop", "-graceful", "-sigterm"))


# -- the targets ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    key: str  # the row it judges
    text: str  # shown in the table's target column
    check: Check
    why: str | None = None  # reasoning behind the number, shown in the notes


L = LIMITS
# etcd's put via the leader: over plain HTTP, and with client and peer mutual TLS as Warren always runs
ETCD_LEADER_ROWS = ("etcd/3/leader", "etcd/3-mtls/leader")
_FAILOVER_TEXT = f"p50 ≤ {_ms(L.failover_p50_ms)}, max ≤ {_ms(L.failover_max_ms)}"
_KILL_FAILOVER = all_of(
    at_most("p50_ms", L.failover_p50_ms),
    at_most("max_ms", L.failover_max_ms),
    below_peers("etcd (SIGKILL)", _etcd_sigkill, ("p50_ms", "max_ms"), strict=True),
)

TARGETS: tuple[Target, ...] = (
    Target(
        "commit_latency/3/sequential", f"p50 ≤ {_ms(L.commit_p50_ms)}", at_most("p50_ms", L.commit_p50_ms)
    ),
    Target("commit_latency/3/concurrent", "≥ 30,000/s and ≥ PySyncObj", _throughput),
    Target(
        "failover/3",
        _FAILOVER_TEXT,
        all_of(at_most("p50_ms", L.failover_p50_ms), at_most("max_ms", L.failover_max_ms)),
    ),
    Target("leader_failover/sigkill", _FAILOVER_TEXT + ", both < etcd's (SIGKILL rows)", _KILL_FAILOVER),
    # client_failover/3 is the same measurement under its older name (results from before leader_failover)
    Target("client_failover/3", _FAILOVER_TEXT + ", both < etcd's (SIGKILL rows)", _KILL_FAILOVER),
    Target(
        "leader_failover/graceful",
        f"p50 ≤ {_ms(L.graceful_p50_ms)}, max ≤ {_ms(L.graceful_max_ms)}",
        all_of(at_most("p50_ms", L.graceful_p50_ms), at_most("max_ms", L.graceful_max_ms)),
        why="a graceful handoff has no randomised election timeout to wait out, so every trial, not just "
        "the median, should be within 100 ms",
    ),
    Target(
        "manager_api/3/leader",
        f"p50 ≤ {_ms(L.api_leader_p50_ms)}, p99 ≤ {_ms(L.api_leader_p99_ms)}, "
        "p50 ≤ etcd's (plain and mutual TLS)",
        all_of(
            at_most("p50_ms", L.api_leader_p50_ms),
            at_most("p99_ms", L.api_leader_p99_ms),
            # issue 18: met against both etcd rows of the same run, the plain one and the mutual-TLS one
            below_peers("etcd", lambda k: k in ETCD_LEADER_ROWS, ("p50_ms",), strict=False),
        ),
    ),
    Target(
        "manager_api/3/follower",
        f"p50 ≤ {_ms(L.api_follower_p50_ms)}, p50 ≤ the leader's + {_ms(L.api_forward_extra_ms)}",
        all_of(
            at_most("p50_ms", L.api_follower_p50_ms),
            within_of("manager_api/3/leader", "p50_ms", L.api_forward_extra_ms),
        ),
    ),
    Target(
        "containers/crash",
        f"max ≤ {_ms(L.container_crash_max_ms)}, p50 ≤ Swarm's (default settings)",
        all_of(
            at_most("max_ms", L.container_crash_max_ms),
            below_peers("Swarm", lambda k: k == "swarm/crash-default", ("p50_ms",), strict=False),
        ),
    ),
    Target(
        "containers/create-20",
        "p50 ≤ Swarm's",
        below_peers("Swarm", lambda k: k == "swarm/create-20", ("p50_ms",), strict=False, alone=True),
    ),
    Target(
        "worker_failure/process",
        f"max ≤ {_ms(L.worker_failure_max_ms)}",
        at_most("max_ms", L.worker_failure_max_ms),
    ),
    Target(
        "schedule/1000", f"max ≤ {_ms(L.schedule_1000_max_ms)}", at_most("max_ms", L.schedule_1000_max_ms)
    ),
    Target(
        "schedule/4000",
        f"max ≤ {_ms(L.schedule_4000_max_ms)}, per replica ≤ {1 + L.schedule_per_replica_spread:g}× the "
        "smallest size's",
        all_of(
            at_most("max_ms", L.schedule_4000_max_ms),
            flat_per_replica("schedule/", L.schedule_per_replica_spread),
        ),
        why="cost grows with the work, not faster: time per replica flat from 250 to 4,000 replicas",
    ),
    Target(
        "planner/idle",
        f"p99 ≤ {_ms(L.planner_idle_p99_ms)}",
        at_most("p99_ms", L.planner_idle_p99_ms),
        why="a pass works on what changed, not on the whole state: with nothing changed, nothing to read",
    ),
    Target(
        "cli/service-ls",
        f"p50 ≤ {_ms(L.cli_service_ls_p50_ms)}",
        at_most("p50_ms", L.cli_service_ls_p50_ms),
    ),
    Target("rss/manager", f"≤ {L.manager_rss_mb:g} MB", at_most("value_mb", L.manager_rss_mb)),
    Target("rss/worker", f"≤ {L.worker_rss_mb:g} MB", at_most("value_mb", L.worker_rss_mb)),
    Target("cpu/manager", f"≤ {L.idle_cpu_pct:g} % of a core", at_most("value_pct", L.idle_cpu_pct)),
    Target("cpu/worker", f"≤ {L.idle_cpu_pct:g} % of a core", at_most("value_pct", L.idle_cpu_pct)),
    Target(
        "bridge/apply/cython",
        f"throughput ≥ {L.bridge_speedup:g}× the pure bridge's",
        _bridge_speedup,
        why="issue 18; SQLite and the handlers take nearly all of the time (docs/decisions.md, "
        '"The compiled bridge cannot be 2× the pure one")',
    ),
)


def apply_targets(rows: Iterable[Row]) -> None:
    """Mark each row that has a target with `target`, `verdict` (met / missed / n/a / missed (error))
    and `target_note` when there is something to say. Earlier marks are replaced, so a table merged from
    several runs is judged by today's targets against the peers it holds."""
    by_key = {r["key"]: r for r in rows if "key" in r}
    for row in by_key.values():
        for field in ("target", "verdict", "target_note"):
            row.pop(field, None)
    for target in TARGETS:
        judged = by_key.get(target.key)
        if judged is None:
            continue
        judged["target"] = target.text
        if judged.get("error"):
            judged["verdict"] = "missed (error)"
            continue
        ok, note = target.check(judged, by_key)
        judged["verdict"] = "n/a" if ok is None else ("met" if ok else "missed")
        notes = "; ".join(n for n in (note, target.why) if n)
        if notes:
            judged["target_note"] = notes


# -- peers ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pair:
    warren: str  # Warren's row key
    peer: str  # the peer's row key, measured by the same procedure
    fields: tuple[str, ...]  # what to set side by side


LATENCY = ("p50_ms", "p99_ms", "max_ms")
RECOVERY = ("p50_ms", "max_ms")
PAIRS: tuple[Pair, ...] = (
    Pair("leader_failover/sigkill", "etcd/3/failover-default", RECOVERY),
    Pair("leader_failover/sigkill", "etcd/3/failover-et500", RECOVERY),
    Pair("leader_failover/sigstop", "etcd/3/failover-sigstop", RECOVERY),
    Pair("manager_api/3/leader", "etcd/3/leader", LATENCY),
    Pair("manager_api/3/follower", "etcd/3/follower", LATENCY),
    Pair("manager_api/3/leader", "etcd/3-mtls/leader", LATENCY),
    Pair("manager_api/3/follower", "etcd/3-mtls/follower", LATENCY),
    # What client and peer mutual TLS cost etcd: its put with and without it.
    Pair("etcd/3-mtls/leader", "etcd/3/leader", LATENCY),
    Pair("commit_latency/3/sequential", "pysyncobj/3/sequential", LATENCY),
    Pair("commit_latency/3/concurrent", "pysyncobj/3/concurrent", ("throughput_per_s",)),
    # What mutual TLS on the Raft transport costs: the same workload with and without it.
    Pair("commit_latency/3-tls/sequential", "commit_latency/3/sequential", LATENCY),
    Pair("commit_latency/3-tls/concurrent", "commit_latency/3/concurrent", ("throughput_per_s",)),
    Pair("containers/crash", "swarm/crash-default", RECOVERY),
    Pair("containers/crash", "swarm/crash-delay0", RECOVERY),
    Pair("containers/create-20", "swarm/create-20", RECOVERY),
    # networking: what the ingress proxy adds to a direct connection, and Swarm's mesh beside it
    Pair("networking/proxy/new", "networking/direct/new", LATENCY),
    Pair("networking/proxy/kept", "networking/direct/kept", (*LATENCY, "throughput_per_s")),
    Pair("networking/proxy/new", "networking/swarm/mesh/new", LATENCY),
    Pair("networking/proxy/kept", "networking/swarm/mesh/kept", (*LATENCY, "throughput_per_s")),
    Pair("networking/dns/warren/api", "networking/dns/docker/alias", LATENCY),
    # What compiling the bridge buys: the same batches through the compiled and the pure entry loop.
    Pair("bridge/apply/cython", "bridge/apply/python", ("throughput_per_s",)),
    Pair("bridge/loop/cython", "bridge/loop/python", ("throughput_per_s",)),
    Pair("cli/service-ls", "cli/docker-service-ls", LATENCY),
)


@dataclass(frozen=True)
class Ratio:
    warren: str
    peer: str
    field: str
    warren_value: float | None
    peer_value: float | None
    missing: str | None  # "not measured: <key>" when a side has no number

    @property
    def higher_is_better(self) -> bool:
        return self.field == "throughput_per_s"

    @property
    def ratio(self) -> float | None:
        """Warren ÷ peer: for times below 1 means Warren is faster, for throughput above 1 means more."""
        if self.warren_value is None or not self.peer_value:
            return None
        return self.warren_value / self.peer_value

    @property
    def warren_ahead(self) -> bool | None:
        r = self.ratio
        return None if r is None else (r > 1 if self.higher_is_better else r < 1)


def ratios(rows: Iterable[Row], pairs: tuple[Pair, ...] = PAIRS) -> list[Ratio]:
    """One Ratio per pair and field; a pair with a side absent, errored or without that number gets one
    Ratio naming what was not measured."""
    by_key = {r["key"]: r for r in rows if "key" in r}
    out: list[Ratio] = []
    for pair in pairs:
        mine, theirs = by_key.get(pair.warren, {}), by_key.get(pair.peer, {})
        absent = [key for key, r in ((pair.warren, mine), (pair.peer, theirs)) if not r or r.get("error")]
        if absent:
            why = "not measured: " + ", ".join(absent)
            out.append(Ratio(pair.warren, pair.peer, pair.fields[0], None, None, why))
            continue
        for field in pair.fields:
            a, b = mine.get(field), theirs.get(field)
            gap = None if a is not None and b is not None else f"no {field} on a side"
            out.append(Ratio(pair.warren, pair.peer, field, a, b, gap))
    return out
