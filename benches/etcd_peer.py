"""Scenario `etcd`: the manager_api and leader_failover procedures on a 3-member etcd cluster, for comparison.

etcd comes from Debian's `etcd-server` package (installed here with apt-get when `etcd` is missing and
that is possible; otherwise the scenario is recorded as missing, with the reason). Three members run on
127.0.0.61-63 with plain HTTP, their data dirs next to Warren's (same filesystem, fsync on: etcd's
defaults). Writes are puts through etcd's HTTP JSON gateway, `POST /v3/kv/put {"key": b64, "value":
b64}` (a new key each time), on the same keep-alive client as Warren's API writes. The leader is the
member every member's `POST /v3/maintenance/status` names.

Write latency is measured through the leader and through a follower (which hands the proposal to the
leader inside Raft) with the default timers, twice: over plain HTTP (rows etcd/3/leader, /follower), and
on a second cluster with client and peer mutual TLS (rows etcd/3-mtls/leader, /follower), as Warren's
API and Raft transport always run: etcd's own `--client-cert-auth` and `--peer-client-cert-auth`,
https URLs, certificates made by the benchmark (benches/etcd_certs.py: a CA, a certificate per member
with its IP as SAN, a client certificate the put client presents on its kept connection).

Client failover (benches/client_failover.py: the leader disrupted, the client retrying round-robin on
the two survivors) runs on a fresh cluster per timer setting, plain HTTP: with the default timers
(heartbeat 100 ms, election timeout 1000 ms) SIGKILL, SIGSTOP and SIGTERM (etcd transfers leadership on
a graceful stop, as Warren does), interleaved; with `--election-timeout 500 --heartbeat-interval 100`
SIGKILL only.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import ssl
import subprocess
import time
from pathlib import Path
from typing import Any

from benches import etcd_certs
from benches.client_failover import failover_row, run_trials
from benches.leader_failover import EVENTS, LeaderFailoverParams
from benches.manager_api import ApiLatencyParams, MakeWrite, latency_row, timed_writes
from benches.managers import (
    FORM_TIMEOUT_S,
    POLL_S,
    STABLE_TIMEOUT_S,
    HarnessError,
    Http,
    HttpError,
    call,
)
from tests.integration.nodeproc import REPO_ROOT
from warren.testing.process import Daemon, free_port

MEMBERS = 3
INSTALL_TIMEOUT_S = 600.0
EXIT_TIMEOUT_S = 30.0  # a SIGTERMed member that has not exited by then is killed; seconds
# (name, label, extra etcd flags, failover variants run with them)
TIMERS: list[tuple[str, str, list[str], tuple[str, ...]]] = [
    (
        "default",
        "default timers (heartbeat 100 ms, election timeout 1000 ms)",
        [],
        ("sigkill", "sigstop", "graceful"),
    ),
    (
        "et500",
        "--election-timeout 500 --heartbeat-interval 100",
        ["--election-timeout", "500", "--heartbeat-interval", "100"],
        ("sigkill",),
    ),
]


def row_key(timers: str, variant: str) -> str:
    """etcd/3/failover-default and -et500 (SIGKILL, as before), etcd/3/failover-sigstop, -graceful."""
    return f"etcd/{MEMBERS}/failover-{timers if variant == 'sigkill' else variant}"


def ensure_etcd() -> str | None:
    """None when an `etcd` binary is on PATH (installing Debian's etcd-server if needed), else why not."""
    if shutil.which("etcd"):
        return None
    if not shutil.which("apt-get"):
        return "etcd is not installed and apt-get is not available to install Debian's etcd-server"
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        return "etcd is not installed, and installing Debian's etcd-server (apt-get) needs root"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    out = ""
    for argv in (
        ["apt-get", "install", "-y", "etcd-server"],
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "etcd-server"],
    ):
        try:
            done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"{' '.join(argv)} failed: {exc}"
        out = (done.stdout + done.stderr).strip()
        if shutil.which("etcd"):
            return None
    last = out.splitlines()[-1] if out else "no output"
    return f"etcd is not installed and `apt-get install -y etcd-server` did not install it: {last}"


def etcd_version() -> str:
    try:
        out = subprocess.run(["etcd", "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    for line in out.splitlines():
        if line.startswith("etcd Version:"):
            return line.split(":", 1)[1].strip()
    return "?"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def put_write(prefix: str) -> MakeWrite:
    def make(n: int) -> tuple[str, str, bytes]:
        return "POST", "/v3/kv/put", json.dumps({"key": _b64(f"{prefix}{n}"), "value": _b64("x")}).encode()

    return make


def put_acked(status: int, _: bytes) -> bool:
    return status == 200


class EtcdMember(Daemon):
    def __init__(self, index: int, host: str, base_dir: Path, tls: ssl.SSLContext | None = None) -> None:
        self.index = index
        self.host = host
        self.tls = tls  # the client side of mutual TLS, or None for plain HTTP
        self.addr = f"{host}:{free_port(host)}"  # client URL (the JSON gateway)
        self.peer_addr = f"{host}:{free_port(host)}"
        self.data_dir = base_dir / f"etcd{index}"
        self.member_id: str | None = None
        # etcd reads ETCD_* variables as flags: keep any in the environment out of it.
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD_")}
        log = base_dir / f"etcd{index}.log"
        super().__init__(f"etcd{index}@{self.addr}", [], log, cwd=REPO_ROOT, env=env)

    def http(self, timeout_s: float) -> Http:
        """A keep-alive connection to the JSON gateway (HTTPS with the client certificate under mTLS)."""
        return Http(self.addr, timeout_s, self.tls)

    def status(self) -> dict[str, Any] | None:
        try:
            code, doc = call(self.addr, "POST", "/v3/maintenance/status", {}, tls=self.tls)
        except HttpError:
            return None
        return doc if code == 200 and isinstance(doc, dict) else None


class EtcdCluster:
    """Three etcd members on loopback, formed with a static initial cluster; `timer_flags` go to each.
    With `mtls`, client and peer ports are HTTPS and require a certificate from the run's own CA."""

    def __init__(
        self, base_dir: Path, timer_flags: list[str], first_host: int = 60, mtls: bool = False
    ) -> None:
        self.base_dir = base_dir
        self.timer_flags = timer_flags
        self.first_host = first_host
        self.mtls = mtls
        self.members: list[EtcdMember] = []

    def __enter__(self) -> EtcdCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for m in self.members:
            m.kill()

    def start(self, n: int = MEMBERS) -> EtcdMember:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        hosts = [f"127.0.0.{self.first_host + i}" for i in range(1, n + 1)]
        certs = etcd_certs.make(self.base_dir / "tls", hosts) if self.mtls else None
        client = certs.client_context() if certs is not None else None
        self.members = [EtcdMember(i, h, self.base_dir, client) for i, h in enumerate(hosts, start=1)]
        s = "https" if self.mtls else "http"
        initial = ",".join(f"e{m.index}={s}://{m.peer_addr}" for m in self.members)
        token = "bench-" + secrets.token_hex(4)
        for m in self.members:
            tls_flags: list[str] = []
            if certs is not None:
                own = certs.members[m.host]
                for prefix in ("--", "--peer-"):
                    tls_flags += [
                        f"{prefix}cert-file", str(own.cert), f"{prefix}key-file", str(own.key),
                        f"{prefix}trusted-ca-file", str(certs.ca), f"{prefix}client-cert-auth",
                    ]  # fmt: skip
            m.argv = [
                "etcd", "--name", f"e{m.index}", "--data-dir", str(m.data_dir),
                "--listen-client-urls", f"{s}://{m.addr}", "--advertise-client-urls", f"{s}://{m.addr}",
                "--listen-peer-urls", f"{s}://{m.peer_addr}",
                "--initial-advertise-peer-urls", f"{s}://{m.peer_addr}",
                "--initial-cluster", initial, "--initial-cluster-state", "new",
                "--initial-cluster-token", token,
                "--logger", "zap", "--log-outputs", "stderr", "--log-level", "warn",
                *tls_flags,
                *self.timer_flags,
            ]  # fmt: skip
            m.start()
        return self.wait_stable(FORM_TIMEOUT_S)

    def live(self) -> list[EtcdMember]:
        return [m for m in self.members if m.alive]

    def disrupt(self, member: Any, variant: str) -> None:
        m: EtcdMember = member
        m.disrupt(variant)

    def recover(self, member: Any, variant: str) -> dict[str, Any]:
        """Thaw a frozen member, or restart a killed or stopped one (it resumes from its data dir), and
        wait until the cluster is stable again."""
        m: EtcdMember = member
        extra: dict[str, Any] = {}
        if variant == "sigstop":
            m.thaw()
            self.wait_stable(FORM_TIMEOUT_S)
            return extra
        if variant == "graceful":
            extra["exit_code"] = m.wait_exit(EXIT_TIMEOUT_S)
            if extra["exit_code"] is None:
                m.kill()
        m.start()
        self.wait_stable(FORM_TIMEOUT_S)
        return extra

    def wait_stable(self, timeout_s: float = STABLE_TIMEOUT_S) -> EtcdMember:
        """The leader, once every live member names it and has applied everything it has committed."""
        deadline = time.monotonic() + timeout_s
        seen: dict[str, Any] = {}
        while time.monotonic() < deadline:
            for m in self.members:
                if m.proc is not None and not m.alive and m.proc.returncode not in (-9, 0, None):
                    raise HarnessError(m.exit_note())
            live = self.live()
            statuses = {m.label: m.status() for m in live}
            seen = {k: (s or {}).get("leader") for k, s in statuses.items()}
            leaders = set(seen.values())
            if len(leaders) == 1 and None not in leaders and "0" not in leaders:
                for m in live:
                    m.member_id = statuses[m.label]["header"]["member_id"]  # type: ignore[index]
                lead = leaders.pop()
                leader = next((m for m in live if m.member_id == lead), None)
                if leader is not None:
                    committed = int(statuses[leader.label].get("raftIndex", 0))  # type: ignore[union-attr]
                    applied = [int(s.get("raftAppliedIndex", 0)) for s in statuses.values() if s is not None]
                    if min(applied) >= committed - 1:  # the leader's own last entry may still be applying
                        return leader
            time.sleep(POLL_S)
        raise HarnessError(f"etcd: no stable leader within {timeout_s:g} s (leader seen by each: {seen})")


def run(base_dir: Path, latency: ApiLatencyParams, failover: LeaderFailoverParams) -> dict[str, Any]:
    """Put latency (leader, follower), then failover per timer setting and variant (failover.trials
    each; failover.max_wall_s bounds each timer setting's trials)."""
    reason = ensure_etcd()
    if reason is not None:
        return {"status": "missing", "reason": reason, "rows": []}
    version = etcd_version()
    label = f"etcd {version}, {MEMBERS} members"
    results: dict[str, Any] = {"version": version, "loadavg_before": os.getloadavg()}
    rows: list[dict[str, Any]] = []
    errors: list[str] = []
    for name, timers, flags, variants in TIMERS:
        with EtcdCluster(base_dir / f"etcd-{name}", flags) as cluster:
            try:
                leader = cluster.start()
                if name == "default":  # latency does not depend on the election timeout: measured once
                    rows += _latency(cluster, leader, "", label, latency, results)
                outcome = run_trials(
                    cluster,
                    put_write("f-"),
                    put_acked,
                    variants,
                    failover.trials,
                    failover.client,
                    failover.max_wall_s,
                )
            except HarnessError as exc:
                outcome = {"trials": {v: [] for v in variants}, "error": f"HarnessError: {exc}"}
            results[f"failover-{name}"] = outcome
            if outcome["error"]:
                errors.append(f"{name}: {outcome['error']}")
            for variant in variants:
                rows.append(
                    failover_row(
                        "etcd",
                        row_key(name, variant),
                        f"{label}, {timers}",
                        EVENTS[variant].replace("leader (it hands", "leader (etcd hands"),
                        outcome["trials"][variant],
                        failover.client,
                        outcome["error"],
                    )
                )
    # The same put latency with client and peer mutual TLS, on a cluster of its own (no failover on it:
    # what TLS costs a kept connection is a latency question; the failover rows stay plain, as before).
    mtls_label = f"{label}, client and peer mutual TLS"
    with EtcdCluster(base_dir / "etcd-mtls", [], mtls=True) as cluster:
        try:
            leader = cluster.start()
            rows += _latency(cluster, leader, "-mtls", mtls_label, latency, results)
        except HarnessError as exc:
            errors.append(f"mtls: HarnessError: {exc}")
            rows.append(
                {"scenario": "etcd", "key": f"etcd/{MEMBERS}-mtls", "what": "cluster", "error": str(exc)}
            )
    results["loadavg_after"] = os.getloadavg()
    return {
        "status": "ok" if not errors else "error",
        "error": "; ".join(errors) or None,
        "config": {
            "members": MEMBERS,
            "latency": latency.as_dict(),
            "failover": failover.as_dict(),
            "timers": {name: {"flags": f, "variants": list(v)} for name, _, f, v in TIMERS},
        },
        "results": results,
        "rows": rows,
    }


def _latency(
    cluster: EtcdCluster,
    leader: EtcdMember,
    variant: str,
    label: str,
    params: ApiLatencyParams,
    results: dict[str, Any],
) -> list[dict[str, Any]]:
    """Put latency via the leader, then via a follower (results[role + variant]); their table rows,
    keyed etcd/3<variant>/<role>."""
    follower = next(m for m in cluster.members if m is not leader)
    rows = []
    n = 0
    for role, target in (("leader", leader), ("follower", follower)):
        conn = target.http(params.request_timeout_s)
        try:
            measured = timed_writes(conn, put_write("b-"), put_acked, params, first=n)
        finally:
            conn.close()
        n = measured["next"]
        results[role + variant] = measured
        row = latency_row(
            "etcd",
            f"etcd/{MEMBERS}{variant}/{role}",
            f"{label}: put (POST /v3/kv/put) via the {role}",
            measured,
        )
        rows.append(row)
    if cluster.wait_stable() is not leader:
        results[f"leader_changed_during_latency{variant}"] = True
        for row in rows:
            row["note"] = (row.get("note", "") + " the leader changed during the run").strip()
    return rows
